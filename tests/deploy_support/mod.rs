//! Shared by the deploy tests: a moto server with a stage directory and the wsctl binary
//! pointed at both, fake handler builds with their manifest, wsctl runs in the background
//! (to signal or kill them mid-way), and an HTTP proxy that can hold one API call.
#![allow(dead_code)]

pub mod hold;
pub mod record;

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsctl_testkit::{MotoServer, TempDir};

pub const FUNCTIONS: [&str; 6] = ["authorizer", "connect", "disconnect", "message", "publish", "admin"];

/// A moto server, a directory with a stage file, and the wsctl binary pointed at both.
pub struct Harness {
    pub moto: MotoServer,
    pub dir: TempDir,
    pub stage: String,
}

impl Harness {
    pub fn new(stage: &str, stage_yaml: &str) -> Harness {
        let moto = MotoServer::start().expect("moto_server (pip install 'moto[server]')");
        let dir = TempDir::new("wsctl-deploy").expect("temp dir");
        std::fs::create_dir_all(dir.join("stages")).expect("stages dir");
        std::fs::write(dir.join(format!("stages/{stage}.yaml")), stage_yaml).expect("stage file");
        Harness { moto, dir, stage: stage.to_owned() }
    }

    /// Applies moto's environment, the fast poll and the temp dir to a command.
    fn with_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(self.moto.aws_env()).env("WSCTL_POLL_MS", "20").env_remove("AWS_PROFILE").current_dir(self.dir.path())
    }

    /// wsctl with the stage dir and moto's environment; stdin is never a TTY.
    pub fn command(&self, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsctl"));
        cmd.arg("--stages-dir").arg(self.dir.join("stages")).args(args).stdin(Stdio::null());
        self.with_env(&mut cmd);
        cmd
    }

    /// Runs wsctl to completion (see [`Harness::command`]).
    pub fn wsctl(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run wsctl")
    }

    /// `deploy --yes --manifest M` (optionally with `--output json`).
    pub fn deploy(&self, manifest: &Path, json: bool) -> Output {
        let manifest = manifest.to_str().expect("utf-8 path");
        let mut args = vec!["deploy", "--stage", &self.stage, "--yes", "--manifest", manifest];
        if json {
            args.extend(["--output", "json"]);
        }
        self.wsctl(&args)
    }

    /// Writes one zip per function (content from `body`) and a manifest into `dist_name`.
    pub fn manifest(&self, dist_name: &str, body: impl Fn(&str) -> String) -> PathBuf {
        let dist = self.dir.join(dist_name);
        std::fs::create_dir_all(&dist).expect("dist dir");
        let mut functions = serde_json::Map::new();
        for f in FUNCTIONS {
            let zip = stored_zip("bootstrap", body(f).as_bytes());
            let file = format!("{f}.zip");
            std::fs::write(dist.join(&file), &zip).expect("write zip");
            functions.insert(
                f.to_owned(),
                serde_json::json!({ "file": file, "sha256": sha256_hex(&zip), "size": zip.len() }),
            );
        }
        let manifest = serde_json::json!({
            "version": 1,
            "architecture": "arm64",
            "target": "aarch64-unknown-linux-gnu.2.34",
            "functions": functions,
        });
        let path = dist.join("manifest.json");
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).expect("json")).expect("write manifest");
        path
    }

    pub fn runtime(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_lambda::config::Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await
    }
}

/// A zip with one stored (uncompressed) entry, written here so the test does not depend
/// on the code under test.
pub fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32fast::hash(data);
    let mut out = Vec::new();
    let n = name.len() as u16;
    let len = data.len() as u32;
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [20u16, 0, 0, 0, 0x21] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, len, len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let cd_offset = out.len() as u32;
    let mut cd = Vec::new();
    cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [(3u16 << 8) | 20, 20, 0, 0, 0, 0x21] {
        cd.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, len, len] {
        cd.extend_from_slice(&v.to_le_bytes());
    }
    for v in [n, 0, 0, 0, 0] {
        cd.extend_from_slice(&v.to_le_bytes());
    }
    cd.extend_from_slice(&(0o100_755u32 << 16).to_le_bytes());
    cd.extend_from_slice(&0u32.to_le_bytes());
    cd.extend_from_slice(name.as_bytes());
    let cd_len = cd.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(o)))
}

pub fn stack<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["stacks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} stack in {report:#}"))
}

/// Adds a probe zip to the manifest at `path`.
pub fn with_probe(path: &std::path::Path) {
    let zip = stored_zip("bootstrap", b"probe build 1");
    let dir = path.parent().expect("dist");
    std::fs::write(dir.join("probe.zip"), &zip).expect("write zip");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("manifest JSON");
    manifest["functions"]["probe"] =
        serde_json::json!({ "file": "probe.zip", "sha256": sha256_hex(&zip), "size": zip.len() });
    std::fs::write(path, serde_json::to_string_pretty(&manifest).expect("json")).expect("write manifest");
}

/// A stage moto can run: VPC created by the data stack, Redis given by URL (moto skips
/// ElastiCache resources in CloudFormation).
pub fn stage_yaml(extra: &str) -> String {
    format!(
        "region: us-east-1\naccount: \"123456789012\"\nredis:\n  mode: existing\n  url: rediss://redis.internal.example:6379\n\
         network:\n  mode: create\n  cidr: 10.60.0.0/16\ntables:\n  retain: false\nlimits:\n  max_rooms_per_connection: 64\n{extra}"
    )
}

impl Harness {
    /// Starts wsctl in the background with moto's environment; `endpoint` replaces moto's
    /// address (a proxy in front of it).
    pub fn spawn(&self, args: &[impl AsRef<std::ffi::OsStr>], endpoint: Option<&str>) -> Running {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(endpoint) = endpoint {
            cmd.env("AWS_ENDPOINT_URL", endpoint);
        }
        Running::start(cmd)
    }

    /// Starts wsctl in a pseudo-terminal (util-linux `script`), as an operator at a shell
    /// runs it: the prompt is shown, and a Ctrl-C typed with [`Running::type_keys`]
    /// reaches it as the terminal's SIGINT. stdout and stderr arrive merged on stdout.
    pub fn spawn_in_terminal(&self, args: &[&str]) -> Running {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = vec![quote(env!("CARGO_BIN_EXE_wsctl")), "--stages-dir".into()];
        line.push(quote(self.dir.join("stages").to_str().expect("utf-8 path")));
        line.extend(args.iter().map(|a| quote(a)));
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", &line.join(" "), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.with_env(&mut cmd);
        Running::start(cmd)
    }

    /// `[deploy --stage S --yes --manifest M --output json]` as argument strings.
    pub fn deploy_args(&self, manifest: &Path) -> Vec<String> {
        let m = manifest.to_str().expect("utf-8 path").to_owned();
        ["deploy", "--stage", &self.stage, "--yes", "--manifest", &m, "--output", "json"].map(str::to_owned).to_vec()
    }

    /// The code SHA-256 each function of the stage's app stack runs.
    pub fn code_shas(&self) -> Vec<(String, String)> {
        self.runtime().block_on(async {
            let lambda = aws_sdk_lambda::Client::new(&self.sdk().await);
            let mut shas = Vec::new();
            for f in FUNCTIONS {
                let name = format!("wsctl-{}-app-{f}", self.stage);
                let cfg = lambda.get_function_configuration().function_name(&name).send().await;
                let sha = cfg.ok().and_then(|c| c.code_sha256().map(str::to_owned)).unwrap_or_default();
                shas.push((f.to_owned(), sha));
            }
            shas
        })
    }

    /// A stack's status (`None`: no such stack).
    pub fn stack_status(&self, name: &str) -> Option<String> {
        self.runtime().block_on(async {
            let cfn = aws_sdk_cloudformation::Client::new(&self.sdk().await);
            let out = cfn.describe_stacks().stack_name(name).send().await.ok()?;
            let status = out.stacks().first()?.stack_status()?.as_str().to_owned();
            (status != "DELETE_COMPLETE").then_some(status)
        })
    }

    /// Change sets of a stack that could still be executed (`AVAILABLE`), by name.
    pub fn executable_change_sets(&self, stack: &str) -> Vec<String> {
        self.runtime().block_on(async {
            let cfn = aws_sdk_cloudformation::Client::new(&self.sdk().await);
            let Ok(out) = cfn.list_change_sets().stack_name(stack).send().await else { return Vec::new() };
            out.summaries()
                .iter()
                .filter(|c| c.stack_name() == Some(stack))
                .filter(|c| c.execution_status().map(|e| e.as_str()) == Some("AVAILABLE"))
                .filter_map(|c| c.change_set_name().map(str::to_owned))
                .collect()
        })
    }
}

/// A wsctl process running in the background, its output collected as it comes.
pub struct Running {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut out) = into.lock() {
                out.extend_from_slice(&buf[..n]);
            }
        }
    })
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("start wsctl");
        let stdin = child.stdin.take();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running { child, stdin, stdout, stderr, readers }
    }

    /// Types into a process started by [`Harness::spawn_in_terminal`] (`b"\x03"` is Ctrl-C).
    pub fn type_keys(&mut self, keys: &[u8]) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started in a terminal");
        stdin.write_all(keys).and_then(|_| stdin.flush()).expect("type into the terminal");
    }

    /// Everything written to stdout and stderr so far.
    pub fn output_so_far(&self) -> String {
        let out = self.stdout.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let err = self.stderr.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    }

    /// Waits until stdout or stderr contains `needle`; panics with the output after `timeout`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let so_far = self.output_so_far();
            if so_far.lines().any(|l| l.contains(needle)) {
                return;
            }
            assert!(Instant::now() < deadline, "wsctl never printed {needle:?}:\n{so_far}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`libc::SIGINT`, `libc::SIGTERM`, `libc::SIGKILL`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill() with our child's pid and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits for the process to exit (killing it after `timeout`) and returns its output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for wsctl") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let so_far = self.output_so_far();
                panic!("wsctl did not exit within {timeout:?}:\n{so_far}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let take = |b: &Arc<Mutex<Vec<u8>>>| b.lock().map(|b| b.clone()).unwrap_or_default();
        Output { status, stdout: take(&self.stdout), stderr: take(&self.stderr) }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
