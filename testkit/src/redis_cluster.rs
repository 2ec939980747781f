//! A real Redis Cluster (cluster mode enabled, as ElastiCache runs it) of `redis-server`
//! processes on free loopback ports, formed with `redis-cli --cluster create`.

use std::ffi::OsString;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{find_program, spawn_tied, Service};
use crate::redis::{base_args, probe, resp_command};
use crate::{free_port, RespValue, TempDir, TestkitError};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Forming a cluster (handshakes, slot assignment, replica sync) on a busy machine.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// `--cluster-node-timeout`: how long a node may be unreachable before it is suspected.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u32 = 16384;
const SERVER_HINT: &str = "apt-get install -y redis-server";
const CLI_HINT: &str = "apt-get install -y redis-tools (pulled in by redis-server)";

/// One node as one node sees it (a line of `CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodeView {
    /// The node id (40 hex characters).
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Flags: `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, ...
    pub flags: Vec<String>,
    /// The id of its master when it is a replica.
    pub master_id: Option<String>,
    /// The slot ranges it serves (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNodeView {
    /// `true` if it carries `flag`.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// A master that is not flagged `fail` or `fail?`.
    pub fn is_healthy_master(&self) -> bool {
        self.has("master") && !self.has("fail") && !self.has("fail?")
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Parses the text of `CLUSTER NODES`.
fn parse_nodes(text: &str) -> Result<Vec<ClusterNodeView>, TestkitError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || TestkitError::protocol(format!("unexpected CLUSTER NODES line {line:?}"));
        if fields.len() < 8 {
            return Err(bad());
        }
        // ip:port@cport[,hostname]
        let port = fields[1]
            .split_once('@')
            .and_then(|(addr, _)| addr.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(bad)?;
        let mut slots = Vec::new();
        // Migrating/importing entries look like `[slot->-id]`; they are not ownership.
        for s in fields[8..].iter().filter(|s| !s.starts_with('[')) {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            slots.push((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?));
        }
        out.push(ClusterNodeView {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master_id: Some(fields[3]).filter(|m| *m != "-").map(str::to_owned),
            slots,
        });
    }
    Ok(out)
}

/// `field:value` of an `INFO` or `CLUSTER INFO` reply.
fn info_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
}

struct Node {
    service: Service,
    id: String,
    /// The TLS client port, for a TLS cluster.
    tls_port: Option<u16>,
}

/// Which address the nodes of a TLS cluster announce to clients
/// (`cluster-preferred-endpoint-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncedEndpoint {
    /// `127.0.0.1`, as ElastiCache may announce node IPs.
    Ip,
    /// The hostname the certificate names.
    Hostname,
}

/// TLS for every node of a cluster: the certificate and key from [`ClusterTlsFiles::generate`],
/// clients without certificates, the cluster bus and replication over TLS, and
/// `cluster-announce-hostname` set to the certificate's name.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// Certificate files.
    pub files: ClusterTlsFiles,
    /// What the nodes announce in `CLUSTER SLOTS`/`CLUSTER SHARDS`.
    pub announce: AnnouncedEndpoint,
}

/// A CA and a server certificate naming only a hostname (no IP address), made with the
/// `openssl` command at test time.
#[derive(Debug, Clone)]
pub struct ClusterTlsFiles {
    /// The CA certificate (PEM): what a client must trust.
    pub ca: std::path::PathBuf,
    /// The server certificate (PEM), `subjectAltName = DNS:<hostname>`.
    pub cert: std::path::PathBuf,
    /// Its key (PEM).
    pub key: std::path::PathBuf,
    /// The one name the certificate is valid for.
    pub hostname: String,
}

impl ClusterTlsFiles {
    /// Writes a fresh CA and a certificate for `hostname` into `dir` with `openssl`.
    pub fn generate(dir: &std::path::Path, hostname: &str) -> Result<ClusterTlsFiles, TestkitError> {
        let openssl = find_program("openssl", "WSCTL_OPENSSL", "apt-get install -y openssl")?;
        let path = |f: &str| dir.join(f);
        let san = format!("subjectAltName=DNS:{hostname}");
        let steps: [Vec<OsString>; 3] = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wsctl test CA"]
                .iter()
                .map(OsString::from)
                .chain(["-keyout".into(), path("ca.key").into(), "-out".into(), path("ca.crt").into()])
                .collect(),
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={hostname}"), "-addext", &san]
                .iter()
                .map(OsString::from)
                .chain(["-keyout".into(), path("server.key").into(), "-out".into(), path("server.csr").into()])
                .collect(),
            ["x509", "-req", "-days", "2", "-copy_extensions", "copy", "-CAcreateserial"]
                .iter()
                .map(OsString::from)
                .chain([
                    "-in".into(),
                    path("server.csr").into(),
                    "-CA".into(),
                    path("ca.crt").into(),
                    "-CAkey".into(),
                    path("ca.key").into(),
                    "-out".into(),
                    path("server.crt").into(),
                ])
                .collect(),
        ];
        for args in steps {
            let out = Command::new(&openssl)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| TestkitError::io("run openssl", e))?;
            if !out.status.success() {
                return Err(TestkitError::Exited {
                    service: "openssl",
                    status: out.status,
                    log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        Ok(ClusterTlsFiles {
            ca: path("ca.crt"),
            cert: path("server.crt"),
            key: path("server.key"),
            hostname: hostname.to_owned(),
        })
    }
}

/// A node this harness killed, and what it served when it died.
#[derive(Debug, Clone)]
struct Killed {
    port: u16,
    id: String,
    slots: Vec<(u16, u16)>,
}

/// A Redis Cluster of its own: `masters` masters with `replicas` replicas each, every node a
/// `redis-server --cluster-enabled yes` on `127.0.0.1:<free port>` (cluster bus on another
/// free port), with a short `--cluster-node-timeout` ([`NODE_TIMEOUT_MS`]), no persistence
/// and its `nodes.conf` in its own temp dir. Every process is killed on drop.
///
/// Needs Debian's `redis-server` and `redis-cli` (`apt-get install -y redis-server`, which
/// pulls in `redis-tools`); `$WSCTL_REDIS_SERVER` and `$WSCTL_REDIS_CLI` override the
/// programs.
///
/// ```no_run
/// use std::time::Duration;
/// let mut cluster = wsctl_testkit::RedisCluster::start(3, 1).unwrap();
/// let seed = cluster.url(); // redis://127.0.0.1:PORT, for a cluster-mode client
/// let master = cluster.master_for_key("room:{tvl:chain:ethereum}:connections").unwrap();
/// cluster.wait_replicated(master, Duration::from_secs(10)).unwrap();
/// cluster.kill_node(master).unwrap(); // SIGKILL
/// let promoted = cluster.wait_for_failover(master, Duration::from_secs(30)).unwrap();
/// ```
pub struct RedisCluster {
    nodes: Vec<Node>,
    killed: Vec<Killed>,
    masters: usize,
    dir: TempDir,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .field("killed", &self.killed.iter().map(|k| k.port).collect::<Vec<_>>())
            .finish()
    }
}

impl RedisCluster {
    /// Starts `masters` (at least 3, as `redis-cli --cluster create` requires) times
    /// `1 + replicas` nodes, forms the cluster and waits until every node reports
    /// `cluster_state:ok` with all 16384 slots assigned and every replica in sync.
    pub fn start(masters: usize, replicas: usize) -> Result<RedisCluster, TestkitError> {
        RedisCluster::start_with(masters, replicas, None)
    }

    /// [`RedisCluster::start`] with TLS: each node also serves TLS on a port of its own
    /// (what [`RedisCluster::tls_url`] names); the plain port stays for the harness's own
    /// commands. A client over TLS learns the other nodes' TLS ports.
    pub fn start_tls(masters: usize, replicas: usize, tls: ClusterTls) -> Result<RedisCluster, TestkitError> {
        RedisCluster::start_with(masters, replicas, Some(tls))
    }

    fn start_with(masters: usize, replicas: usize, tls: Option<ClusterTls>) -> Result<RedisCluster, TestkitError> {
        if masters < 3 {
            return Err(TestkitError::io(
                "start a Redis cluster",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a Redis cluster needs at least 3 masters"),
            ));
        }
        let server = find_program("redis-server", "WSCTL_REDIS_SERVER", SERVER_HINT)?;
        let cli = find_program("redis-cli", "WSCTL_REDIS_CLI", CLI_HINT)?;
        let dir = TempDir::new("wsctl-testkit-redis-cluster").map_err(|e| TestkitError::io("create a temp dir", e))?;
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let tls_port = tls.as_ref().map(|_| free_port());
            let node_tls = tls.clone().zip(tls_port);
            let args = move |port: u16| {
                let mut args = node_args(port);
                if let Some((t, tls_port)) = &node_tls {
                    args.extend(tls_args(t, *tls_port));
                }
                args
            };
            let mut service = Service::new("redis-server", server.clone(), Box::new(args))?;
            service.start(READY_TIMEOUT, &probe)?;
            nodes.push(Node { service, id: String::new(), tls_port });
        }
        let mut cluster = RedisCluster { nodes, killed: Vec::new(), masters, dir };
        cluster.create(&cli, replicas)?;
        for node in &mut cluster.nodes {
            node.id = match resp_command(node.service.port, &[b"CLUSTER", b"MYID"])? {
                v @ (RespValue::Bulk(Some(_)) | RespValue::Simple(_)) => v.as_str().unwrap_or_default().to_owned(),
                other => return Err(TestkitError::protocol(format!("CLUSTER MYID answered {other:?}"))),
            };
        }
        cluster.wait_healthy(FORM_TIMEOUT)?;
        Ok(cluster)
    }

    /// `redis-cli --cluster create <every node> --cluster-replicas R --cluster-yes`.
    fn create(&self, cli: &std::path::Path, replicas: usize) -> Result<(), TestkitError> {
        let log_path = self.dir.join("cluster-create.log");
        let log = File::create(&log_path).map_err(|e| TestkitError::io(format!("create {}", log_path.display()), e))?;
        let log_err = log.try_clone().map_err(|e| TestkitError::io("clone a log file handle", e))?;
        let mut cmd = Command::new(cli);
        cmd.arg("--cluster").arg("create");
        cmd.args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.service.port)));
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = spawn_tied(cmd).map_err(|e| TestkitError::io(format!("spawn {}", cli.display()), e))?;
        let tail = || {
            let s = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(TestkitError::Exited { service: "redis-cli", status, log_tail: tail() })
                }
                Ok(None) if start.elapsed() < FORM_TIMEOUT => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(TestkitError::Timeout {
                        what: "redis-cli --cluster create".into(),
                        waited: start.elapsed(),
                        log_tail: tail(),
                    });
                }
                Err(e) => return Err(TestkitError::io("wait for redis-cli", e)),
            }
        }
    }

    /// The seed URL for a cluster-mode client, `redis://127.0.0.1:PORT` of the first node
    /// still running (the client discovers the others from it).
    pub fn url(&self) -> String {
        let port = self.live_ports().first().copied().unwrap_or(self.nodes[0].service.port);
        format!("redis://127.0.0.1:{port}")
    }

    /// The seed URL for a TLS cluster-mode client, `rediss://<certificate's hostname>:TLS_PORT`
    /// of the first node still running; `None` for a cluster without TLS.
    pub fn tls_url(&self, hostname: &str) -> Option<String> {
        let live = self.live_ports();
        let node = self.nodes.iter().find(|n| live.contains(&n.service.port)).unwrap_or(&self.nodes[0]);
        Some(format!("rediss://{hostname}:{}", node.tls_port?))
    }

    /// The TLS port of every node, in start order (empty without TLS).
    pub fn tls_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter_map(|n| n.tls_port).collect()
    }

    /// The client port of every node, in start order (killed ones included).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.service.port).collect()
    }

    /// The client ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.service.pid().is_some()).map(|n| n.service.port).collect()
    }

    /// The process ids of the nodes still running.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.service.pid()).collect()
    }

    /// Runs one command on the node at `port` (fresh connection; an error reply is
    /// `Ok(RespValue::Error(..))`, e.g. `MOVED` when the node does not own the key).
    pub fn cmd_on(&self, port: u16, args: &[&str]) -> Result<RespValue, TestkitError> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        resp_command(port, &args)
    }

    /// Runs a command whose key is `key` on the master that currently owns the key's slot.
    /// `cluster.cmd_for_key(k, &["SMEMBERS", k])`.
    pub fn cmd_for_key(&self, key: &str, args: &[&str]) -> Result<RespValue, TestkitError> {
        self.cmd_on(self.master_for_key(key)?, args)
    }

    /// The members of the set at `key`, sorted, read from the master that owns it. Around a
    /// failover a node's view of the slots can lag for a moment (MOVED, TRYAGAIN, a master
    /// not yet known): such answers are retried for up to 30 s.
    pub fn smembers(&self, key: &str) -> Result<Vec<String>, TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.cmd_for_key(key, &["SMEMBERS", key]);
            if let Some(set) = answer.as_ref().ok().and_then(RespValue::to_sorted_strings) {
                return Ok(set);
            }
            if Instant::now() > deadline {
                return Err(TestkitError::protocol(format!("SMEMBERS {key} never answered a set: {answer:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn any_live_port(&self) -> Result<u16, TestkitError> {
        self.live_ports().first().copied().ok_or(TestkitError::NotRunning { service: "redis-cluster" })
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, so `{hash tags}` count as Redis counts them).
    pub fn keyslot(&self, key: &str) -> Result<u16, TestkitError> {
        match self.cmd_on(self.any_live_port()?, &["CLUSTER", "KEYSLOT", key])? {
            RespValue::Integer(i) => u16::try_from(i).map_err(|_| TestkitError::protocol(format!("slot {i}"))),
            other => Err(TestkitError::protocol(format!("CLUSTER KEYSLOT answered {other:?}"))),
        }
    }

    /// The cluster as the node at `port` sees it (`CLUSTER NODES`).
    pub fn nodes_seen_by(&self, port: u16) -> Result<Vec<ClusterNodeView>, TestkitError> {
        match self.cmd_on(port, &["CLUSTER", "NODES"])? {
            v @ (RespValue::Bulk(Some(_)) | RespValue::Simple(_)) => parse_nodes(v.as_str().unwrap_or_default()),
            other => Err(TestkitError::protocol(format!("CLUSTER NODES answered {other:?}"))),
        }
    }

    /// The port of the master serving `slot`, as the first running node sees it.
    pub fn master_for_slot(&self, slot: u16) -> Result<u16, TestkitError> {
        self.nodes_seen_by(self.any_live_port()?)?
            .into_iter()
            .find(|n| n.is_healthy_master() && n.serves(slot))
            .map(|n| n.port)
            .ok_or_else(|| TestkitError::protocol(format!("no healthy master serves slot {slot}")))
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_for_key(&self, key: &str) -> Result<u16, TestkitError> {
        self.master_for_slot(self.keyslot(key)?)
    }

    /// The ports of the healthy masters that serve slots, sorted.
    pub fn masters(&self) -> Result<Vec<u16>, TestkitError> {
        let mut v: Vec<u16> = self
            .nodes_seen_by(self.any_live_port()?)?
            .into_iter()
            .filter(|n| n.is_healthy_master() && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The ports of the replicas of the master at `master_port`.
    pub fn replicas_of(&self, master_port: u16) -> Result<Vec<u16>, TestkitError> {
        let view = self.nodes_seen_by(self.any_live_port()?)?;
        let id = self.id_of(master_port)?;
        Ok(view.into_iter().filter(|n| n.has("slave") && n.master_id.as_deref() == Some(id)).map(|n| n.port).collect())
    }

    fn id_of(&self, port: u16) -> Result<&str, TestkitError> {
        self.nodes
            .iter()
            .find(|n| n.service.port == port)
            .map(|n| n.id.as_str())
            .ok_or_else(|| TestkitError::protocol(format!("no node of this cluster listens on port {port}")))
    }

    /// Waits until every replica of the master at `master_port` has acknowledged the master's
    /// current replication offset, i.e. every write the master accepted so far is on them.
    ///
    /// Redis replicates asynchronously: a write acknowledged to a client may still be lost
    /// if its master dies before this point. Tests call this before killing a master so they
    /// assert what the system guarantees.
    pub fn wait_replicated(&self, master_port: u16, timeout: Duration) -> Result<(), TestkitError> {
        let offset = |port: u16, field: &str| -> Result<u64, TestkitError> {
            let info = self.cmd_on(port, &["INFO", "replication"])?;
            info_field(info.as_str().unwrap_or_default(), field)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| TestkitError::protocol(format!("INFO replication of :{port} has no {field}")))
        };
        let target = offset(master_port, "master_repl_offset")?;
        let replicas = self.replicas_of(master_port)?;
        self.poll(timeout, &format!("the replicas of :{master_port} to reach offset {target}"), || {
            for &r in &replicas {
                let at = offset(r, "slave_repl_offset").map_err(|e| e.to_string())?;
                if at < target {
                    return Err(format!("replica :{r} is at offset {at}"));
                }
            }
            Ok(())
        })
    }

    /// Kills the node at `port` with SIGKILL (no chance to hand anything over) and reaps it.
    /// Its slots stay unserved until [`RedisCluster::wait_for_failover`] sees a replica promoted.
    pub fn kill_node(&mut self, port: u16) -> Result<(), TestkitError> {
        let view = self.nodes_seen_by(port)?;
        let me = view
            .into_iter()
            .find(|n| n.has("myself"))
            .ok_or_else(|| TestkitError::protocol(format!("node :{port} does not list itself")))?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.service.port == port)
            .ok_or_else(|| TestkitError::protocol(format!("no node of this cluster listens on port {port}")))?;
        node.service.kill();
        self.killed.push(Killed { port, id: me.id, slots: me.slots });
        Ok(())
    }

    /// After [`RedisCluster::kill_node`] of the master at `killed_port`: waits until a
    /// replica took over its slots and every running node reports `cluster_state:ok`, with
    /// the dead node flagged `fail` and every slot served by a running master. Returns the
    /// promoted node's port.
    pub fn wait_for_failover(&self, killed_port: u16, timeout: Duration) -> Result<u16, TestkitError> {
        let killed = self
            .killed
            .iter()
            .find(|k| k.port == killed_port)
            .ok_or_else(|| TestkitError::protocol(format!("node :{killed_port} was not killed by this harness")))?;
        let &(first_slot, _) = killed
            .slots
            .first()
            .ok_or_else(|| TestkitError::protocol(format!("node :{killed_port} served no slots (not a master)")))?;
        let start = Instant::now();
        self.wait_healthy(timeout)?;
        let promoted = self.master_for_slot(first_slot)?;
        if promoted == killed_port {
            return Err(TestkitError::Timeout {
                what: format!("a replica of :{killed_port} to be promoted"),
                waited: start.elapsed(),
                log_tail: String::new(),
            });
        }
        Ok(promoted)
    }

    /// Waits until every running node reports `cluster_state:ok` with all slots assigned and
    /// none failing, agrees that every slot is served by a running master and every killed
    /// node is `fail`, and every running replica's link to its master is up.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), TestkitError> {
        self.poll(timeout, "the Redis cluster to be healthy", || self.health())
    }

    fn health(&self) -> Result<(), String> {
        let live: Vec<(u16, &str)> =
            self.nodes.iter().filter(|n| n.service.pid().is_some()).map(|n| (n.service.port, n.id.as_str())).collect();
        let s = |e: TestkitError| e.to_string();
        for &(port, _) in &live {
            let info = self.cmd_on(port, &["CLUSTER", "INFO"]).map_err(s)?;
            let info = info.as_str().unwrap_or_default();
            for (field, want) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", SLOTS.to_string()),
                ("cluster_slots_ok", SLOTS.to_string()),
                ("cluster_known_nodes", self.nodes.len().to_string()),
            ] {
                let got = info_field(info, field).unwrap_or("?");
                if got != want {
                    return Err(format!("node :{port} reports {field}:{got}"));
                }
            }
            let view = self.nodes_seen_by(port).map_err(s)?;
            let mut served = 0u32;
            for n in &view {
                let running = live.iter().any(|&(_, id)| id == n.id);
                if !running && !self.killed.iter().any(|k| k.id == n.id) {
                    return Err(format!("node :{port} knows a node {} that is not ours", n.id));
                }
                if running && (n.has("fail") || n.has("fail?")) {
                    return Err(format!("node :{port} sees running node :{} as {:?}", n.port, n.flags));
                }
                if !running && !n.has("fail") {
                    return Err(format!("node :{port} does not yet see killed node :{} as failed", n.port));
                }
                if running && n.has("master") {
                    served += n.slots.iter().map(|&(a, b)| u32::from(b) - u32::from(a) + 1).sum::<u32>();
                }
            }
            if served != SLOTS {
                return Err(format!("node :{port} sees {served} slots served by running masters"));
            }
            if view.iter().any(|n| n.has("myself") && n.has("slave")) {
                let repl = self.cmd_on(port, &["INFO", "replication"]).map_err(s)?;
                let link = info_field(repl.as_str().unwrap_or_default(), "master_link_status").unwrap_or("?");
                if link != "up" {
                    return Err(format!("replica :{port} has master_link_status:{link}"));
                }
            }
        }
        if self.killed.is_empty() {
            let masters = self.masters().map_err(s)?;
            if masters.len() != self.masters {
                return Err(format!("{} masters serve slots, expected {}", masters.len(), self.masters));
            }
        }
        Ok(())
    }

    /// Polls `check` until it is `Ok` or `timeout` passes; the timeout error names the last
    /// reason `check` gave.
    fn poll(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Result<(), TestkitError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let why = match check() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if start.elapsed() >= timeout {
                return Err(TestkitError::Timeout {
                    what: format!("{what} (last: {why})"),
                    waited: start.elapsed(),
                    log_tail: self.log_tails(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The last lines each running node wrote, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.iter().filter(|n| n.service.pid().is_some()) {
            let tail = n.service.log_tail();
            let lines: Vec<&str> = tail.lines().collect();
            out.push_str(&format!(
                "== node :{} ==\n{}\n",
                n.service.port,
                lines[lines.len().saturating_sub(8)..].join("\n")
            ));
        }
        out
    }
}

/// A TLS node's extra arguments.
fn tls_args(tls: &ClusterTls, tls_port: u16) -> Vec<OsString> {
    let endpoint = match tls.announce {
        AnnouncedEndpoint::Ip => "ip",
        AnnouncedEndpoint::Hostname => "hostname",
    };
    let mut args: Vec<OsString> = ["--tls-port", &tls_port.to_string()].iter().map(OsString::from).collect();
    for (flag, file) in [
        ("--tls-cert-file", &tls.files.cert),
        ("--tls-key-file", &tls.files.key),
        ("--tls-ca-cert-file", &tls.files.ca),
    ] {
        args.push(flag.into());
        args.push(file.into());
    }
    args.extend(
        [
            "--tls-auth-clients",
            "no",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
            "--cluster-announce-hostname",
            &tls.files.hostname,
            "--cluster-preferred-endpoint-type",
            endpoint,
        ]
        .iter()
        .map(OsString::from),
    );
    args
}

/// One node's command line: its client port, a bus port of its own (the default port+10000
/// may be taken or above 65535), cluster mode with a short node timeout, no persistence.
fn node_args(port: u16) -> Vec<OsString> {
    let bus = free_port().to_string();
    let timeout = NODE_TIMEOUT_MS.to_string();
    let mut args = base_args(port);
    args.extend(
        [
            "--cluster-port",
            &bus,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            // Masters keep serving their own slots while another shard has none (between a
            // master's failure and its replica's promotion), instead of answering
            // CLUSTERDOWN for every key: what ElastiCache's cluster-mode parameter groups do.
            "--cluster-require-full-coverage",
            "no",
        ]
        .iter()
        .map(OsString::from),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave \
                    e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
                    e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 \
                    connected 0-5460 5462 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\n\
                    6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 0 0 5 \
                    disconnected\n";
        let v = parse_nodes(text).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].port, v[0].has("slave")), (30004, true));
        assert_eq!(v[0].master_id.as_deref(), Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"));
        assert_eq!(v[1].slots, vec![(0, 5460), (5462, 5462)]);
        assert!(v[1].has("myself") && v[1].is_healthy_master() && v[1].serves(5462) && !v[1].serves(5461));
        assert!(!v[2].is_healthy_master());
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Replication\r\nrole:slave\r\nslave_repl_offset:42\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "slave_repl_offset"), Some("42"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "role_x"), None);
    }
}
