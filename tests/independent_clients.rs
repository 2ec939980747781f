//! `wsctl dev` driven by clients we did not write: `tests/clients/independent.py` runs
//! Python's `websockets` (key in the query and in `x-api-key`, subscribe, a 20 s hold with
//! publishes before and after the 15 s mark, ping, unsubscribe, clean close) and boto3's
//! `apigatewaymanagementapi` client (GetConnection fields, PostToConnection, GoneException).
//!
//! Needs `python3` with `websockets` (13 or later) and `boto3`
//! (`python3 -m pip install 'websockets>=13' boto3`); `WSCTL_PYTHON3` names another
//! interpreter. A missing package fails the test with that hint rather than skipping it.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole script holds for 20 s; this bounds it if the gateway stops answering.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> String {
    std::env::var("WSCTL_PYTHON3").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_websockets_and_boto3_clients_work_against_the_gateway() {
    let python = python();
    let probe = Command::new(&python).args(["-c", "import websockets.asyncio.client, boto3"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{python} lacks the independent clients ({}); install them with: \
             {python} -m pip install 'websockets>=13' boto3",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {python} ({e}); install Python 3 or set WSCTL_PYTHON3"),
    }

    let gw = DevGateway::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/independent.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--url", &gw.url, "--key", &gw.key, "--management", &gw.management])
        .args(["--admin", &format!("http://{}", gw.addr), "--state-dir"])
        .arg(gw.state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the Python client");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the Python client") {
            break status;
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python client did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("Python client output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(status.success(), "{} failed ({status}):\n{stdout}\n{stderr}", script.display());
    assert!(stdout.starts_with("ok: held "), "unexpected output:\n{stdout}\n{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(20), "the script cannot have held its connection 20 s");
}
