//! A real `moto_server` (AWS APIs: DynamoDB, CloudFormation, S3, Lambda, IAM, ...) on a free
//! loopback port.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::http::{http_request, HttpResponse};
use crate::process::{find_program, Service};
use crate::TestkitError;

/// Python imports a lot on first start; a busy CI machine that is compiling at the same
/// time can take a while.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_HINT: &str = "pip install 'moto[server]'";

/// A `moto_server` process of its own on `127.0.0.1:<free port>`. Killed on drop.
///
/// The program is `$WSCTL_MOTO_SERVER` if set, else `moto_server` from `PATH`, else
/// `python3 -m moto.server`. Its state lives in memory: [`MotoServer::restart`] comes back
/// empty, [`MotoServer::reset`] empties it without a restart.
///
/// Point SDK clients at [`MotoServer::endpoint`] (e.g. `aws_config::defaults(..)
/// .endpoint_url(moto.endpoint())` with static `testing` credentials), and subprocesses
/// (`wsctl`, `aws`, `cfn-lint`) at it with `Command::envs(moto.aws_env())`.
#[derive(Debug)]
pub struct MotoServer {
    service: Service,
}

fn probe(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(http_request(addr, "GET", "/moto-api/", &[], b"", Duration::from_secs(2)), Ok(r) if r.status == 200)
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until `GET /moto-api/` answers 200.
    pub fn start() -> Result<MotoServer, TestkitError> {
        let (program, prefix): (PathBuf, Vec<OsString>) =
            match find_program("moto_server", "WSCTL_MOTO_SERVER", INSTALL_HINT) {
                Ok(p) => (p, Vec::new()),
                Err(not_found) => match find_program("python3", "WSCTL_PYTHON3", INSTALL_HINT) {
                    Ok(py) => (py, vec!["-m".into(), "moto.server".into()]),
                    Err(_) => return Err(not_found),
                },
            };
        let mut service = Service::new(
            "moto_server",
            program,
            Box::new(move |port| {
                let mut args = prefix.clone();
                args.extend(["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string().into()]);
                args
            }),
        )?;
        // moto reads these for its defaults (account, region); keep it off any real AWS config.
        service.env("AWS_ACCESS_KEY_ID", "testing");
        service.env("AWS_SECRET_ACCESS_KEY", "testing");
        service.env("AWS_DEFAULT_REGION", "us-east-1");
        service.env("AWS_EC2_METADATA_DISABLED", "true");
        service.env("PYTHONUNBUFFERED", "1");
        let started = service.start(READY_TIMEOUT, &probe);
        if let Err(TestkitError::Exited { log_tail, .. }) = &started {
            if log_tail.contains("No module named") || log_tail.contains("command not found") {
                return Err(TestkitError::NotInstalled {
                    program: "moto_server",
                    searched: format!("PATH and python3 ({log_tail})"),
                    hint: INSTALL_HINT,
                });
            }
        }
        started?;
        Ok(MotoServer { service })
    }

    /// One server for the whole test binary, started on first use and killed when the
    /// binary exits (moto takes about a second to start; this pays it once). Tests that
    /// share it must use their own resource names (tables, stacks, buckets) and must not
    /// [`MotoServer::reset`] it; fault tests need their own server.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn shared() -> &'static MotoServer {
        static SHARED: std::sync::OnceLock<MotoServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| MotoServer::start().unwrap_or_else(|e| panic!("start the shared moto_server: {e}")))
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for every AWS SDK client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.service.port)
    }

    /// The TCP port it listens on (kept across [`MotoServer::restart`]).
    pub fn port(&self) -> u16 {
        self.service.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.service.port))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// The environment a subprocess needs to talk to this server and nothing else:
    /// `AWS_ACCESS_KEY_ID=testing`, `AWS_SECRET_ACCESS_KEY=testing`, `AWS_REGION=us-east-1`,
    /// `AWS_DEFAULT_REGION=us-east-1`, `AWS_ENDPOINT_URL=<endpoint>`,
    /// `AWS_EC2_METADATA_DISABLED=true`. Use with `Command::envs`.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Stops the server (SIGKILL, then reaps it). A no-op when already stopped.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        self.service.kill();
        Ok(())
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits
    /// until it answers. All state is gone.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.service.restart(READY_TIMEOUT, &probe)
    }

    /// `true` while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.service.check_alive().is_ok()
    }

    /// `POST /moto-api/reset`: forgets every resource of every service.
    pub fn reset(&self) -> Result<(), TestkitError> {
        let r = self.request("POST", "/moto-api/reset", &[], b"")?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(TestkitError::protocol(format!("POST /moto-api/reset answered {}: {}", r.status, r.text())))
        }
    }

    /// Sends one raw HTTP request to the server (e.g. `GET /moto-api/data.json`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TestkitError> {
        http_request(self.addr(), method, path, headers, body, HTTP_TIMEOUT)
    }

    /// The last lines the server wrote to its log (for assertion messages).
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }
}
