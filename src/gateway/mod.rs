//! `wsctl dev`: a local gateway that behaves like API Gateway WebSocket and runs the same
//! handler code in-process, on embedded stores by default (`--redis-url` and
//! `--dynamodb-endpoint` switch to real services).

pub mod connect;
mod exposure;
pub mod fdlimit;
pub mod http;
mod node;
mod refusals;
pub mod registry;
mod serve;
mod session;
mod sweeper;
#[cfg(test)]
mod tests;

use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::local::{GatewayInfo, LocalState};
use crate::stage::Stage;
use crate::ui::Ui;
use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use registry::{ConnHandle, LocalSender, Registry, CLOSE_GOING_AWAY};
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsctl_handlers::admin::{AdminReply, AdminRequest};
use wsctl_handlers::auth::hash_key;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::ratelimit::TokenBucket;
use wsctl_handlers::service::Services;
use wsctl_handlers::store::dynamo::{self, DynamoConnectionStore, DynamoKeyStore};
use wsctl_handlers::store::memory::{MemoryConnectionStore, MemoryKeyStore, MemoryRoomStore};
use wsctl_handlers::store::node_bus::{new_node_tag, NodeBus};
use wsctl_handlers::store::redis::{RedisConfig, RedisRoomStore};
use wsctl_handlers::store::{ConnectionStore, KeyStore, LiveStore};

/// `wsctl dev`
#[derive(Debug)]
pub struct DevArgs {
    /// Stage file whose limits apply.
    pub stage: String,
    /// Address to listen on (anything but loopback needs --allow-remote).
    pub host: String,
    /// Allow a non-loopback --host: @connections and /metrics have no authentication.
    pub allow_remote: bool,
    /// Port to listen on.
    pub port: u16,
    /// Keep rooms in this Redis (`redis://` or `rediss://`) instead of in memory.
    pub redis_url: Option<String>,
    /// The Redis is in cluster mode.
    pub redis_cluster: bool,
    /// Keep connection records and API keys in DynamoDB at this endpoint (e.g. moto_server).
    pub dynamodb_endpoint: Option<String>,
    /// Table names used with --dynamodb-endpoint (created if missing).
    pub connections_table: String,
    /// API-keys table used with --dynamodb-endpoint (created if missing).
    pub api_keys_table: String,
    /// Directory for the dev key, key records and the admin token.
    pub state_dir: PathBuf,
    /// WebSocket read buffer per connection, in bytes (small keeps memory per connection low:
    /// 2,048 holds 19,000 connections at 7.6 KiB each, 4,096 at 9.6; BENCHMARKS.md).
    pub read_buffer: usize,
    /// Latency and throttling of the `@connections` endpoint (AWS-like; off by default).
    pub management: http::ManagementEmulationArgs,
}

/// The running gateway: handler services plus the live connections.
pub struct Gateway {
    /// The handlers, wired to this gateway's stores and sender.
    pub services: Arc<Services>,
    /// Live connections.
    pub registry: Arc<Registry>,
    /// Set once Ctrl-C was received.
    pub shutting_down: AtomicBool,
    /// Bearer token of `/@admin`.
    pub admin_token: String,
    /// WebSocket read buffer size.
    pub read_buffer: usize,
    /// The stage whose path (`/{stage}`) this gateway serves.
    pub stage: String,
    /// This node's tag, the start of every connection id it mints.
    pub node_tag: String,
    /// The bus to the other gateway nodes on the same Redis (None on the embedded stores).
    pub node: Option<Arc<NodeBus>>,
    /// Latency and throttling of `@connections` (`wsctl dev --management-*`).
    pub management: http::ManagementEmulation,
    connect_rate: Mutex<TokenBucket>,
    refusals: refusals::SourceRefusals,
}

/// A gateway's stores: where rooms, connection records and API keys live.
pub struct GatewayStores {
    /// Rooms, caps and rate-limit buckets.
    pub rooms: Arc<dyn LiveStore>,
    /// Connection records.
    pub connections: Arc<dyn ConnectionStore>,
    /// API keys.
    pub keys: Arc<dyn KeyStore>,
    /// Present on Redis: other `wsctl dev` processes on it share the rooms.
    pub node: Option<Arc<NodeBus>>,
}

impl GatewayStores {
    /// Everything in memory, as `wsctl dev` runs without `--redis-url` and
    /// `--dynamodb-endpoint` (keys not saved to a file).
    pub fn embedded(room_history: usize) -> GatewayStores {
        GatewayStores {
            rooms: Arc::new(MemoryRoomStore::new(room_history)),
            connections: Arc::new(MemoryConnectionStore::new()),
            keys: Arc::new(MemoryKeyStore::new()),
            node: None,
        }
    }
}

/// What a gateway is besides its stores and limits.
pub struct GatewaySettings {
    /// The stage whose path (`/{stage}`) the gateway serves.
    pub stage: String,
    /// Bearer token of `/@admin`.
    pub admin_token: String,
    /// WebSocket read buffer size (at least 1,024 bytes is used).
    pub read_buffer: usize,
    /// Latency and throttling of `@connections`.
    pub management: http::ManagementEmulation,
}

impl Gateway {
    /// A gateway running the handlers on `stores` under `limits`, delivering to its own
    /// connections (and, on Redis, to the other nodes').
    pub fn new(stores: &GatewayStores, limits: &Limits, settings: GatewaySettings) -> Gateway {
        let node_tag = stores.node.as_ref().map_or_else(new_node_tag, |bus| bus.tag().to_owned());
        let metrics = Arc::new(wsctl_handlers::metrics::Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone()));
        // Each session keeps its connection's bucket (no store round trip per frame); the
        // per-key bucket lives in the room store, shared with other nodes on one Redis.
        let sender = Arc::new(LocalSender::new(registry.clone(), stores.node.clone()));
        let mut services = Services::new(
            stores.rooms.clone(),
            stores.connections.clone(),
            stores.keys.clone(),
            sender,
            limits.clone(),
        )
        .with_connection_limit_by_caller();
        services.metrics = metrics;
        Gateway {
            services: Arc::new(services),
            registry,
            shutting_down: AtomicBool::new(false),
            admin_token: settings.admin_token,
            read_buffer: settings.read_buffer.max(1024),
            stage: settings.stage,
            node_tag,
            node: stores.node.clone(),
            management: settings.management,
            connect_rate: Mutex::new(TokenBucket::new(limits.connects_per_second, limits.connects_per_second)),
            refusals: refusals::SourceRefusals::new(limits.refused_connects_per_second_per_source),
        }
    }

    /// Takes a connect-rate token.
    fn admit(&self) -> bool {
        self.connect_rate.lock().map(|mut b| b.try_take()).unwrap_or(false)
    }

    /// Ends a connection: unregisters it and runs `$disconnect` (once).
    pub async fn finish(&self, handle: &ConnHandle) {
        if !self.registry.remove(&handle.id) {
            return;
        }
        if let Err(e) = self.services.disconnect(&handle.id).await {
            tracing::warn!(connection_id = %handle.id, error = %e, "$disconnect cleanup failed; the record expires by TTL");
        }
    }
}

/// The stores in use, and their names for the banner.
struct Stores {
    stores: GatewayStores,
    rooms_name: String,
    records: String,
}

async fn build_stores(args: &DevArgs, aws: &AwsTarget, stage: &Stage, state: &LocalState) -> Result<Stores> {
    let limits = &stage.limits;
    let (rooms, node, rooms_name): (Arc<dyn LiveStore>, _, String) = match &args.redis_url {
        Some(url) => {
            let store = RedisRoomStore::new(RedisConfig {
                url: url.clone(),
                cluster: args.redis_cluster,
                history: limits.room_history,
                connection_ttl_secs: limits.record_ttl_secs(),
            })?
            .with_node_dispatch();
            let shown = wsctl_handlers::store::redis::redact_url(url);
            if shown != *url && std::env::var("WSCTL_REDIS_URL").ok().as_deref() != Some(url.as_str()) {
                tracing::warn!(
                    "the Redis password is on the command line, where `ps` shows it to every user of this \
                     machine; pass the URL in the WSCTL_REDIS_URL environment variable instead"
                );
            }
            store.ping().await.with_context(|| format!("cannot reach Redis at {shown}; is redis-server running?"))?;
            let store = Arc::new(store);
            let node =
                NodeBus::join(store.clone()).await.with_context(|| format!("cannot join the node bus on {shown}"))?;
            (store, Some(node), format!("Redis {shown}"))
        }
        None => (Arc::new(MemoryRoomStore::new(limits.room_history)), None, "in-memory".into()),
    };
    let (connections, keys, records): (Arc<dyn ConnectionStore>, Arc<dyn KeyStore>, String) = match &args
        .dynamodb_endpoint
    {
        Some(endpoint) => {
            let sdk =
                crate::aws::sdk_config(&aws.at_endpoint(endpoint, "us-east-1"), &stage.name, stage.region.as_deref())
                    .await?;
            let client = dynamo::client(&sdk);
            dynamo::ensure_tables(&client, &args.connections_table, &args.api_keys_table)
                .await
                .with_context(|| format!("cannot prepare DynamoDB tables at {endpoint}"))?;
            (
                Arc::new(DynamoConnectionStore::new(client.clone(), &args.connections_table)),
                Arc::new(DynamoKeyStore::new(client, &args.api_keys_table)),
                format!("DynamoDB {endpoint}"),
            )
        }
        None => (
            Arc::new(MemoryConnectionStore::new()),
            Arc::new(MemoryKeyStore::open(state.keys_file())?),
            format!("in-memory (keys in {})", state.keys_file().display()),
        ),
    };
    Ok(Stores { stores: GatewayStores { rooms, connections, keys, node }, rooms_name, records })
}

/// Returns the dev key, creating it (scopes subscribe and publish) on first run or when
/// the stored one is unknown to the key store.
async fn ensure_dev_key(services: &Services, state: &LocalState) -> Result<String> {
    if let Some(raw) = state.dev_key() {
        if let Some(rec) = services.keys.get_by_hash(&hash_key(&raw)).await? {
            if !rec.is_revoked() {
                return Ok(raw);
            }
        }
    }
    let request = AdminRequest::CreateKey {
        name: "local dev key".into(),
        scopes: "subscribe,publish".into(),
        max_connections: 0,
        room_prefix: None,
        expires_at: None,
    };
    match services.admin(request).await {
        AdminReply::KeyCreated { key, .. } => {
            state.save_dev_key(&key)?;
            Ok(key)
        }
        AdminReply::Error { message, .. } => anyhow::bail!("cannot create the dev key: {message}"),
        _ => anyhow::bail!("cannot create the dev key"),
    }
}

/// Runs `wsctl dev` until Ctrl-C.
pub async fn run_dev(stages: &Path, aws: &AwsTarget, ui: &Ui, args: DevArgs) -> Result<Outcome> {
    exposure::check_host(&args.host, args.allow_remote)?;
    let stage = Stage::load(stages, &args.stage)?;
    let management = http::ManagementEmulation::new(&args.management)?;
    let limits = stage.limits.clone();
    fdlimit::raise_and_pregrow(limits.max_connections);
    let state = LocalState::open(&args.state_dir)?;
    let _lock = state.lock_for_gateway()?;
    let stores = build_stores(&args, aws, &stage, &state).await?;
    let settings = GatewaySettings {
        stage: stage.name.clone(),
        admin_token: state.admin_token()?,
        read_buffer: args.read_buffer,
        management,
    };
    let gw = Arc::new(Gateway::new(&stores.stores, &limits, settings));
    let dev_key = ensure_dev_key(&gw.services, &state).await?;

    if let Some(bus) = &gw.node {
        let handler =
            Arc::new(node::GatewayNode { registry: gw.registry.clone(), services: Arc::downgrade(&gw.services) });
        bus.listen(handler).await.context("cannot subscribe to this node's channel on Redis")?;
    }

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (in use? pick another with --port)", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let http = format!("http://{addr}");
    let info = GatewayInfo {
        url: format!("ws://{addr}/{}", stage.name),
        management_endpoint: format!("{http}/{}", stage.name),
        http: http.clone(),
        pid: std::process::id(),
    };
    state.write_gateway(&info)?;
    print_banner(ui, &info, &dev_key, &stores, &gw.node_tag, &args)?;

    let sweeper = tokio::spawn(sweeper::run(gw.clone()));
    serve_on(gw.clone(), listener, &limits, wait_for_signal()).await;
    // Stopped accepting. Close every WebSocket; a second signal cuts the wait short.
    tokio::select! {
        () = drain(&gw, DRAIN_WAIT) => {}
        () = wait_for_signal() => {
            eprintln!("wsctl dev: second signal: not waiting for clients; cleaning up and exiting");
            drain(&gw, Duration::ZERO).await;
        }
    }
    sweeper.abort();
    if let Some(bus) = &gw.node {
        bus.leave().await;
    }
    state.remove_gateway();
    Ok(Outcome::Success)
}

/// The gateway's HTTP surface: the WebSocket upgrade on `/{stage}`, the management API
/// (`@connections`, with or without the stage in the path, as API Gateway serves it), the
/// operator's `/@admin`, `/metrics` and `/healthz`. Binding, the banner and signals are
/// [`run_dev`]'s; this is all a test needs to call the gateway in-process.
pub fn app(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(connect::wrong_stage))
        .route("/{stage}", get(connect::upgrade))
        .route(
            "/@connections/{id}",
            post(http::post_to_connection).get(http::get_connection).delete(http::delete_connection),
        )
        .route(
            "/{stage}/@connections/{id}",
            post(http::post_to_connection).get(http::get_connection).delete(http::delete_connection),
        )
        .route("/@admin", post(http::admin))
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(http::healthz))
        .with_state(gw)
}

/// Serves `gw` on `listener` until `shutdown` completes, with the stage's bounds on the
/// accept loop: the gateway without banner, state files or signals (tests run it
/// in-process on port 0).
pub fn serve_on<S: std::future::Future<Output = ()>>(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    limits: &Limits,
    shutdown: S,
) -> impl std::future::Future<Output = ()> {
    let accept = serve::AcceptLimits {
        handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
        max_pending: limits.max_pending_handshakes,
        send_buffer: limits.send_buffer_bytes,
    };
    let metrics = gw.services.metrics.clone();
    serve::serve(listener, app(gw), accept, metrics, shutdown)
}

/// How long shutdown waits for clients to take their close frame.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Closes every connection with 1001, waits up to `wait` for the sessions to end, then
/// runs `$disconnect` for any that did not.
async fn drain(gw: &Gateway, wait: Duration) {
    gw.shutting_down.store(true, Relaxed);
    let open = gw.registry.all();
    tracing::info!(connections = open.len(), "shutting down: closing every connection");
    for h in &open {
        h.request_close(CLOSE_GOING_AWAY, "server shutting down");
    }
    let deadline = tokio::time::Instant::now() + wait;
    while !gw.registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Whatever did not finish in time still gets its cleanup.
    for h in gw.registry.all() {
        gw.finish(&h).await;
    }
    eprintln!("wsctl dev: stopped; {} connection(s) closed", open.len());
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// ` --state-dir DIR` when the gateway runs on another state directory than the default,
/// so the printed commands reach this gateway.
fn state_dir_flag(dir: &std::path::Path) -> String {
    if dir == std::path::Path::new(".wsctl") {
        String::new()
    } else {
        format!(" --state-dir '{}'", dir.display())
    }
}

fn print_banner(ui: &Ui, info: &GatewayInfo, key: &str, stores: &Stores, node_tag: &str, args: &DevArgs) -> Result<()> {
    let ready = serde_json::json!({
        "url": info.url,
        "apiKey": key,
        "managementEndpoint": info.management_endpoint,
        "metrics": format!("{}/metrics", info.http),
        "pid": info.pid,
        "rooms": stores.rooms_name,
        "records": stores.records,
        "node": node_tag,
    });
    let mut t = String::new();
    if !ui.json() {
        use std::fmt::Write;
        writeln!(t, "wsctl dev: local gateway for stage '{}'", args.stage)?;
        writeln!(t, "  rooms        {}", stores.rooms_name)?;
        writeln!(t, "  records      {}", stores.records)?;
        if stores.stores.node.is_some() {
            writeln!(
                t,
                "  node         {node_tag} (one of the gateways sharing this Redis; each reaches every subscriber)"
            )?;
        }
        writeln!(t, "  WebSocket    {}?apiKey={key}", info.url)?;
        writeln!(
            t,
            "  API key      {key}  (scopes subscribe,publish; saved in {})",
            args.state_dir.join("dev-key").display()
        )?;
        writeln!(t, "  @connections {}/@connections/{{id}}", info.management_endpoint)?;
        if let Some(emulated) = http::ManagementEmulation::new(&args.management).ok().and_then(|m| m.describe()) {
            writeln!(t, "               emulating {emulated}")?;
        }
        writeln!(t, "  metrics      {}/metrics", info.http)?;
        writeln!(t)?;
        let dir = state_dir_flag(&args.state_dir);
        writeln!(t, "Try it:  wsctl subscribe{dir} tvl:protocol:aave")?;
        writeln!(t, r#"         wsctl publish --stage local{dir} --room tvl:protocol:aave '{{"tvl":1}}'"#)?;
        writeln!(t, "   or:   wscat -c '{}?apiKey={key}'", info.url)?;
        writeln!(t, r#"         > {{"action":"subscribe","room":"tvl:protocol:aave"}}"#)?;
        writeln!(t, "Ctrl-C stops the gateway (every connection gets its $disconnect).")?;
    }
    // `record` ends the text with its own newline.
    ui.record(&ready, || t.trim_end_matches('\n').to_owned())
}
