//! The local stage's state directory (`.wsctl/` by default): the dev API key, the key
//! records (hashes only), the admin token, and where a running `wsctl dev` listens, so
//! that `wsctl publish/connections/rooms/keys --stage local` find it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wsctl_handlers::admin::{AdminReply, AdminRequest};

/// The running gateway's own log in the state directory (what `wsctl logs --stage local` reads).
pub const GATEWAY_LOG: &str = "gateway.log";

/// Where a running local gateway listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    /// WebSocket URL (without key).
    pub url: String,
    /// Base HTTP URL.
    pub http: String,
    /// Management API endpoint (point `WS_MANAGEMENT_ENDPOINT` here).
    pub management_endpoint: String,
    /// Process id of the gateway.
    pub pid: u32,
}

/// Held by a running `wsctl dev` for its whole life: an exclusive lock on
/// `gateway.lock` in the state directory (released by the OS when the process ends, even on
/// a crash). The file holds the owner's pid.
#[derive(Debug)]
pub struct GatewayLock {
    _file: std::fs::File,
}

/// The state directory.
pub struct LocalState {
    dir: PathBuf,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    wsctl_handlers::private_file::write(path, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

impl LocalState {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        wsctl_handlers::private_file::create_dir(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        Ok(LocalState { dir: dir.to_owned() })
    }

    /// Opens an existing state directory (for commands that talk to a running gateway).
    pub fn existing(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("no local gateway state in {}: start one with `wsctl dev` (or pass --state-dir)", dir.display());
        }
        Ok(LocalState { dir: dir.to_owned() })
    }

    /// File holding the key records (hashes only).
    pub fn keys_file(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    /// The raw dev key created on first run, if any.
    pub fn dev_key(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("dev-key")).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Saves the raw dev key (mode 0600). Local only: deployed stages never store raw keys.
    pub fn save_dev_key(&self, raw: &str) -> Result<()> {
        write_private(&self.dir.join("dev-key"), raw)
    }

    /// The admin token, created on first use.
    pub fn admin_token(&self) -> Result<String> {
        let path = self.dir.join("admin-token");
        if let Ok(t) = std::fs::read_to_string(&path) {
            if !t.trim().is_empty() {
                return Ok(t.trim().to_owned());
            }
        }
        let token = wsctl_handlers::auth::hash_key(&crate::gateway::connect::new_connection_id());
        write_private(&path, &token)?;
        Ok(token)
    }

    /// Takes the state directory for one gateway, and empties the previous run's
    /// `gateway.log`. A second `wsctl dev` on the same directory is refused with the first
    /// one's pid and URL: two gateways would overwrite each other's `gateway.json`, and the
    /// operator commands would reach only one.
    pub fn lock_for_gateway(&self) -> Result<GatewayLock> {
        use std::io::{Seek, Write};
        let path = self.dir.join("gateway.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                let url = self.gateway().ok().filter(|g| Some(g.pid.to_string()) == pid).map(|g| g.url);
                bail!(
                    "state directory {} is in use by another `wsctl dev` (pid {}, {}); stop that one, \
                     or give this one its own --state-dir",
                    self.dir.display(),
                    pid.as_deref().unwrap_or("unknown"),
                    url.as_deref().unwrap_or("still starting")
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        // Each gateway starts its log afresh (it is appended to, so it never grows across runs).
        let log = self.dir.join(GATEWAY_LOG);
        if log.exists() {
            std::fs::File::create(&log).with_context(|| format!("cannot truncate {}", log.display()))?;
        }
        Ok(GatewayLock { _file: file })
    }

    /// Records where the running gateway listens.
    pub fn write_gateway(&self, info: &GatewayInfo) -> Result<()> {
        write_private(&self.dir.join("gateway.json"), &serde_json::to_string_pretty(info)?)
    }

    /// Forgets the running gateway.
    pub fn remove_gateway(&self) {
        let _ = std::fs::remove_file(self.dir.join("gateway.json"));
    }

    /// Where the running gateway listens.
    pub fn gateway(&self) -> Result<GatewayInfo> {
        let path = self.dir.join("gateway.json");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            anyhow::anyhow!("no local gateway is running (no {}): start it with `wsctl dev`", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("malformed {}", path.display()))
    }

    /// A client for the running gateway's `/@admin` endpoint.
    pub fn admin_client(&self) -> Result<AdminClient> {
        let info = self.gateway()?;
        Ok(AdminClient { base: info.http, token: self.admin_token()? })
    }
}

/// Talks to a running local gateway's `/@admin` endpoint.
pub struct AdminClient {
    base: String,
    token: String,
}

impl AdminClient {
    /// Sends one request and returns the typed reply.
    pub async fn call(&self, request: &AdminRequest) -> Result<AdminReply> {
        use http_body_util::{BodyExt, Full};
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;
        let client: Client<_, Full<axum::body::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let body = serde_json::to_vec(request)?;
        let req = axum::http::Request::post(format!("{}/@admin", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(axum::body::Bytes::from(body)))?;
        let resp = client.request(req).await.with_context(|| {
            format!("cannot reach the local gateway at {}: is `wsctl dev` still running?", self.base)
        })?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading the gateway's reply")?.to_bytes();
        if !status.is_success() {
            bail!("local gateway answered {status}: {}", String::from_utf8_lossy(&bytes).trim());
        }
        serde_json::from_slice(&bytes).context("malformed reply from the local gateway")
    }
}
