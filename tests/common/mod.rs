//! Shared helpers of the CLI's end-to-end tests: start `wsctl dev` on a free port with a
//! private state directory, and talk to it with real WebSocket clients.

#![allow(dead_code)]

pub mod proxy;
pub mod publish_lambda;
pub mod reader;
pub mod templates;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsctl_testkit::{free_port, http_request, TempDir};

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The `wsctl` binary under test.
pub fn wsctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsctl"))
}

/// The repository's `stages/` directory.
pub fn repo_stages() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stages")
}

/// A running `wsctl dev`, killed on drop.
pub struct DevGateway {
    child: Child,
    /// WebSocket URL without key, e.g. `ws://127.0.0.1:P/local`.
    pub url: String,
    /// The dev key (scopes subscribe, publish).
    pub key: String,
    /// Management API endpoint.
    pub management: String,
    /// Listening address.
    pub addr: SocketAddr,
    /// State directory (holds the admin token).
    pub state: TempDir,
    /// Stages directory used.
    pub stages: PathBuf,
}

impl DevGateway {
    /// Starts with the repository's stages and embedded stores.
    pub fn start() -> DevGateway {
        Self::start_with(&repo_stages(), &[])
    }

    /// Starts with a stages directory and extra arguments (e.g. `--redis-url`).
    pub fn start_with(stages: &Path, extra: &[&str]) -> DevGateway {
        Self::start_env(stages, extra, Vec::new())
    }

    /// Starts with a stages directory, extra arguments and extra environment variables
    /// (e.g. moto's dummy AWS credentials); waits at most 60 s for the ready line.
    pub fn start_env(stages: &Path, extra: &[&str], env: Vec<(String, String)>) -> DevGateway {
        let state = TempDir::new("wsctl-dev-state").expect("temp dir");
        let port = free_port();
        let mut child = wsctl()
            .args(["--output", "json", "--stages-dir"])
            .arg(stages)
            .args(["dev", "--port", &port.to_string(), "--state-dir"])
            .arg(state.path())
            .args(extra)
            .envs(env)
            .env_remove("WSCTL_STAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wsctl dev");
        let stdout = child.stdout.take().expect("stdout");
        // A reader thread keeps draining stdout for the process's whole life.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.get("url").is_some() {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!("wsctl dev printed no ready line within 60 s (its stderr is above)");
            }
        };
        DevGateway {
            child,
            url: ready["url"].as_str().expect("url").to_owned(),
            key: ready["apiKey"].as_str().expect("apiKey").to_owned(),
            management: ready["managementEndpoint"].as_str().expect("managementEndpoint").to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
            stages: stages.to_owned(),
        }
    }

    /// Process id of the gateway (for RSS/CPU sampling).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL with `key`.
    pub fn url_with(&self, key: &str) -> String {
        format!("{}?apiKey={key}", self.url)
    }

    /// Connects with the dev key.
    pub async fn connect(&self) -> Ws {
        connect(&self.url_with(&self.key)).await
    }

    /// Sends one typed request to `/@admin` and returns the JSON reply.
    pub fn admin(&self, request: Value) -> Value {
        let token = std::fs::read_to_string(self.state.join("admin-token")).expect("admin token");
        let auth = format!("Bearer {}", token.trim());
        let body = request.to_string();
        let resp = http_request(
            self.addr,
            "POST",
            "/@admin",
            &[("authorization", &auth), ("content-type", "application/json")],
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .expect("admin request");
        assert_eq!(resp.status, 200, "admin: {}", resp.text());
        serde_json::from_str(&resp.text()).expect("admin reply JSON")
    }

    /// The id of the one live connection that connected with user agent `agent` (from
    /// `/@admin`'s `list_connections`); panics unless exactly one matches.
    pub fn connection_id(&self, agent: &str) -> String {
        let reply = self.admin(serde_json::json!({"op": "list_connections", "limit": 100}));
        let ids: Vec<String> = reply["page"]["items"]
            .as_array()
            .expect("list_connections items")
            .iter()
            .filter(|c| c["record"]["userAgent"] == agent)
            .filter_map(|c| c["record"]["connectionId"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids.len(), 1, "connections with user agent {agent:?}: {reply}");
        ids[0].clone()
    }

    /// The real `aws-sdk-apigatewaymanagement` client pointed at this gateway's management
    /// endpoint, with dummy static credentials and the SDK's retries off (so a 429 shows).
    pub fn management_client(&self) -> aws_sdk_apigatewaymanagement::Client {
        use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(&self.management)
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(conf)
    }

    /// The value of the unlabelled Prometheus metric `name` (e.g. `wsctl_live_connections`)
    /// on `/metrics`.
    pub fn metric(&self, name: &str) -> i64 {
        let resp = http_request(self.addr, "GET", "/metrics", &[], b"", Duration::from_secs(5)).expect("metrics");
        let text = resp.text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// Runs `wsctl` with this gateway's state directory; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = wsctl()
            .arg("--stages-dir")
            .arg(&self.stages)
            .args(args)
            .env("WSCTL_STATE_DIR", self.state.path())
            .output()
            .expect("run wsctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit; returns its exit code.
    pub fn interrupt(&mut self) -> Option<i32> {
        // SAFETY: kill() with a valid pid and signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for DevGateway {
    /// Stops the gateway as a user would (SIGTERM: it closes its connections and exits,
    /// which also lets an instrumented binary write its coverage profile), and kills it
    /// if it is not gone within 5 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects a WebSocket client; panics on failure.
pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}")).0
}

/// The HTTP status an upgrade was refused with (None if it succeeded).
pub async fn refused_status(url: &str) -> Option<u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("unexpected error connecting to {url}: {e}"),
    }
}

/// Sends a JSON value as a text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Sends a raw text frame.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Next text frame as JSON (10 s timeout); panics on close or timeout.
pub async fn recv(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).expect("frame is JSON")
}

/// Next text frame as raw text (10 s timeout); panics on close or timeout.
pub async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("read error");
        match msg {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits for the server's close frame and returns its code (5 s timeout).
pub async fn recv_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("timed out waiting for close") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Asserts that no frame arrives within `ms`.
pub async fn assert_silent(ws: &mut Ws, ms: u64) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(ms), ws.next()).await {
        panic!("unexpected frame: {t}");
    }
}

/// Connects with `key` and a chosen user agent (operators list connections by it).
pub async fn connect_as(url: &str, key: &str, agent: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{url}?apiKey={key}").into_client_request()?;
    let agent = agent.parse().map_err(|_| {
        tokio_tungstenite::tungstenite::Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnsupportedUrlScheme,
        )
    })?;
    req.headers_mut().insert("user-agent", agent);
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// Subscribes to `room` and returns the `subscribed` reply (asserting its type and room).
pub async fn subscribe(ws: &mut Ws, room: &str) -> Value {
    send(ws, serde_json::json!({"action": "subscribe", "room": room})).await;
    let reply = recv(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["room"], room, "{reply}");
    reply
}
