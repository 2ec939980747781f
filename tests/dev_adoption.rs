//! Adoption: `wsctl dev` and `init` in an empty directory, the state-directory lock,
//! `--allow-remote`, the "Try it" lines, `publish -` from stdin, a second `keys revoke`,
//! and `wsctl subscribe` (printing, and resuming with `since` after a dropped connection).

use crate::common::proxy::TcpProxy;
use crate::common::{wsctl, DevGateway};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use wsctl_testkit::{free_port, TempDir};

/// Lines of a child's stream, read on a thread.
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line read so far.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return;
            }
        }
    }
    panic!("no line with {needle:?} within 60 s; saw: {seen:#?}");
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wsctl dev` in `dir` with no --stages-dir and the default state dir, text output.
fn dev_in(dir: &std::path::Path, extra: &[&str]) -> (Killed, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = wsctl()
        .current_dir(dir)
        .env_remove("WSCTL_STAGES_DIR")
        .env_remove("WSCTL_STATE_DIR")
        .env_remove("WSCTL_STAGE")
        .env("NO_COLOR", "1")
        .args(["dev", "--port", &free_port().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsctl dev");
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines(child.stderr.take().expect("stderr"));
    (Killed(child), out, err)
}

#[test]
fn dev_runs_in_an_empty_directory_on_the_built_in_local_stage() {
    let dir = TempDir::new("wsctl-empty-repo").expect("temp dir");
    let (_dev, out, _err) = dev_in(dir.path(), &[]);
    let mut seen = Vec::new();
    wait_for(&out, "WebSocket    ws://", &mut seen);
    assert!(seen[0].contains("stage 'local'"), "{seen:?}");
    assert!(dir.join(".wsctl/dev-key").is_file(), "state in the current directory");
}

#[test]
fn init_writes_the_four_commented_stage_files_and_never_overwrites() {
    let dir = TempDir::new("wsctl-init").expect("temp dir");
    let run = || {
        let out = wsctl()
            .current_dir(dir.path())
            .env_remove("WSCTL_STAGES_DIR")
            .arg("init")
            .stdin(Stdio::null())
            .output()
            .expect("run init");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    for stage in ["local", "dev", "staging", "prod"] {
        let written = std::fs::read_to_string(dir.join(format!("stages/{stage}.yaml"))).expect(stage);
        let shipped = std::fs::read_to_string(crate::common::repo_stages().join(format!("{stage}.yaml"))).expect(stage);
        assert_eq!(written, shipped, "{stage}");
        assert!(written.trim_start().starts_with('#'), "{stage}.yaml starts with its explanation");
        assert!(first.contains(&format!("created  stages/{stage}.yaml")), "{first}");
    }
    // The user's edit survives a second init.
    let mine = "# mine\nregion: eu-central-1\naccount: \"123456789012\"\n";
    std::fs::write(dir.join("stages/dev.yaml"), mine).expect("edit");
    let second = run();
    assert!(second.contains("kept     stages/dev.yaml"), "{second}");
    assert_eq!(std::fs::read_to_string(dir.join("stages/dev.yaml")).expect("dev"), mine);
    // A stages/local.yaml in the directory overrides the built-in local stage.
    std::fs::write(dir.join("stages/local.yaml"), "limits:\n  no_such_limit: 1\n").expect("write");
    let out = wsctl()
        .current_dir(dir.path())
        .env_remove("WSCTL_STAGES_DIR")
        .args(["dev", "--port", &free_port().to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run dev");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stages/local.yaml") && err.contains("no_such_limit"), "{err}");
}

#[test]
fn a_second_gateway_on_the_same_state_dir_is_refused_and_names_the_first() {
    let first = DevGateway::start();
    let out = wsctl()
        .arg("--stages-dir")
        .arg(crate::common::repo_stages())
        .args(["dev", "--port", &free_port().to_string(), "--state-dir"])
        .arg(first.state.path())
        .stdin(Stdio::null())
        .output()
        .expect("run second dev");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another `wsctl dev`"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "names the first's pid: {err}");
    assert!(err.contains(&first.url), "names the first's URL: {err}");
    // The first one still owns its state: its gateway.json was not overwritten.
    let (code, _, err) = first.cli(&["connections", "list", "--stage", "local"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_non_loopback_host_needs_allow_remote_and_warns() {
    let dir = TempDir::new("wsctl-remote").expect("temp dir");
    let out = wsctl()
        .current_dir(dir.path())
        .args(["dev", "--host", "0.0.0.0", "--port", &free_port().to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run dev");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(!dir.join(".wsctl").exists(), "refused before touching any state");

    let (_dev, out, err) = dev_in(dir.path(), &["--host", "0.0.0.0", "--allow-remote"]);
    let mut seen = Vec::new();
    wait_for(&out, "WebSocket    ws://0.0.0.0:", &mut seen);
    let mut warned = Vec::new();
    wait_for(&err, "warning: listening on 0.0.0.0", &mut warned);
}

#[test]
fn try_it_lines_carry_a_non_default_state_dir() {
    let dir = TempDir::new("wsctl-tryit").expect("temp dir");
    let state = dir.join("elsewhere");
    let state_arg = state.display().to_string();
    let (_dev, out, _err) = dev_in(dir.path(), &["--state-dir", &state_arg]);
    let mut seen = Vec::new();
    wait_for(&out, "wsctl publish", &mut seen);
    let commands: Vec<&String> =
        seen.iter().filter(|l| l.contains("wsctl subscribe") || l.contains("wsctl publish")).collect();
    assert_eq!(commands.len(), 2, "{seen:#?}");
    for line in &commands {
        assert!(line.contains(&format!("--state-dir '{state_arg}'")), "{line}");
    }
    // The printed subscribe command reaches this gateway as printed.
    let subscribe_line = commands[0].trim_start_matches("Try it:").trim();
    let mut words: Vec<String> = subscribe_line.split_whitespace().map(|w| w.trim_matches('\'').to_owned()).collect();
    assert_eq!(words.remove(0), "wsctl");
    let mut sub = wsctl()
        .current_dir(dir.path())
        .args(&words)
        .args(["--count", "1", "--since", "0"])
        .env_remove("WSCTL_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the printed subscribe");
    let mut err_lines = BufReader::new(sub.stderr.take().expect("stderr")).lines();
    let connected = err_lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(connected.contains("connected to ws://127.0.0.1:"), "{connected}");
    // The default state dir is left out.
    let (_dev2, out2, _err2) = dev_in(dir.path(), &[]);
    let mut seen2 = Vec::new();
    wait_for(&out2, "wsctl publish", &mut seen2);
    assert!(!seen2.iter().any(|l| l.contains("--state-dir")), "{seen2:?}");
}

#[tokio::test]
async fn publish_reads_the_data_from_stdin() {
    let gw = DevGateway::start();
    let mut ws = gw.connect().await;
    crate::common::subscribe(&mut ws, "tvl:protocol:stdin").await;
    let mut child = wsctl()
        .arg("--stages-dir")
        .arg(&gw.stages)
        .args(["publish", "--stage", "local", "--room", "tvl:protocol:stdin", "-"])
        .env("WSCTL_STATE_DIR", gw.state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn publish");
    child.stdin.take().expect("stdin").write_all(br#"{"tvl": 42.5, "from": "stdin"}"#).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msg = crate::common::recv(&mut ws).await;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["data"], json!({"tvl": 42.5, "from": "stdin"}));
}

#[test]
fn a_second_revoke_says_already_revoked() {
    let gw = DevGateway::start();
    let (code, out, err) = gw.cli(&["--output", "json", "keys", "create", "--stage", "local", "--name", "twice"]);
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(&out).expect("json")["keyId"].as_str().expect("keyId").to_owned();
    let (code, out, err) = gw.cli(&["keys", "revoke", "--stage", "local", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revoked "), "{out}");
    let (code, out, err) = gw.cli(&["keys", "revoke", "--stage", "local", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("already revoked "), "{out}");
    let (_, out, _) = gw.cli(&["--output", "json", "keys", "revoke", "--stage", "local", &id]);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["alreadyRevoked"], true, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_prints_messages_and_resumes_with_since_after_a_drop() {
    let gw = DevGateway::start();
    let room = "tvl:protocol:resume";
    let publish = |n: u32| {
        let (code, _, err) = gw.cli(&["publish", "--stage", "local", "--room", room, &format!("{{\"n\":{n}}}")]);
        assert_eq!(code, 0, "{err}");
    };
    // A message before subscribing: a fresh subscribe prints it as the room's latest.
    publish(1);
    let proxy = TcpProxy::start(gw.addr).await;
    let url = format!("ws://{}/local", proxy.addr);
    let mut child = wsctl()
        .args(["--output", "json", "subscribe", room, "--url", &url, "--key", &gw.key, "--count", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn subscribe");
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines(child.stderr.take().expect("stderr"));
    let child = Killed(child);
    let mut printed = Vec::new();
    wait_for(&out, "\"seq\":1", &mut printed);
    publish(2);
    wait_for(&out, "\"seq\":2", &mut printed);
    // Drop the connection; what is published meanwhile must arrive after the reconnect.
    proxy.cut().await;
    publish(3);
    publish(4);
    let mut notes = Vec::new();
    wait_for(&err, "reconnecting", &mut notes);
    proxy.heal();
    wait_for(&err, "reconnected", &mut notes);
    wait_for(&out, "\"seq\":4", &mut printed);
    let mut child = child;
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "exits 0 after --count messages");
    let seqs: Vec<u64> = printed
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON per line")["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4], "each message once, in order: {printed:?}");
    let data: Vec<Value> =
        printed.iter().map(|l| serde_json::from_str::<Value>(l).expect("json")["data"].clone()).collect();
    assert_eq!(data[2], json!({"n": 3}));
    assert!(notes.iter().any(|n| n.contains("since 2")), "says where it resumes: {notes:?}");
}

#[test]
fn each_gateway_starts_a_fresh_log() {
    let dir = TempDir::new("wsctl-fresh-log").expect("temp dir");
    std::fs::create_dir_all(dir.join(".wsctl")).expect("state dir");
    std::fs::write(dir.join(".wsctl/gateway.log"), "2026-01-01T00:00:00Z  INFO from the last run\n").expect("write");
    let (_dev, out, _err) = dev_in(dir.path(), &[]);
    let mut seen = Vec::new();
    wait_for(&out, "WebSocket    ws://", &mut seen);
    let log = std::fs::read_to_string(dir.join(".wsctl/gateway.log")).expect("log");
    assert!(!log.contains("from the last run"), "{log}");
}

/// A TLS-terminating front for the gateway, like a load balancer with a certificate for
/// `localhost`: `wss://localhost:PORT` in, plain WebSocket to `upstream` out.
async fn tls_front(upstream: std::net::SocketAddr, tls: &wsctl_testkit::ClusterTlsFiles) -> u16 {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert).expect("cert").collect::<Result<Vec<_>, _>>().expect("pem");
    let key = PrivateKeyDer::from_pem_file(&tls.key).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_over_wss_checks_the_certificate_against_the_system_roots() {
    let gw = DevGateway::start();
    let dir = TempDir::new("wsctl-wss").expect("temp dir");
    let tls = wsctl_testkit::ClusterTlsFiles::generate(dir.path(), "localhost").expect("openssl certificates");
    let port = tls_front(gw.addr, &tls).await;
    let url = format!("wss://localhost:{port}/local");
    let room = "tvl:protocol:tls";
    let (code, _, err) = gw.cli(&["publish", "--stage", "local", "--room", room, "{\"over\":\"tls\"}"]);
    assert_eq!(code, 0, "{err}");

    // A CA the system does not trust: refused, and the error says it is the certificate.
    let system = TempDir::new("wsctl-wss-roots").expect("temp dir");
    std::fs::write(system.join("roots.pem"), "").expect("an empty root store");
    let untrusted = wsctl()
        .args(["subscribe", room, "--url", &url, "--key", &gw.key, "--count", "1"])
        .env("SSL_CERT_FILE", system.join("roots.pem"))
        .env("SSL_CERT_DIR", system.path())
        .stdin(Stdio::null())
        .output()
        .expect("run subscribe");
    assert!(!untrusted.status.success(), "connected to an untrusted certificate");
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.to_lowercase().contains("certificate"), "names the certificate: {err}");

    // Trusted (the CA in the file the system roots are read from): the room's latest arrives.
    let trusted = wsctl()
        .args(["--output", "json", "subscribe", room, "--url", &url, "--key", &gw.key, "--count", "1"])
        .env("SSL_CERT_FILE", &tls.ca)
        .stdin(Stdio::null())
        .output()
        .expect("run subscribe");
    let stderr = String::from_utf8_lossy(&trusted.stderr);
    assert!(trusted.status.success(), "{stderr}");
    let line: Value = serde_json::from_slice(&trusted.stdout).expect("one JSON line");
    assert_eq!((line["seq"].as_u64(), &line["data"]), (Some(1), &json!({"over": "tls"})), "{line}");
}
