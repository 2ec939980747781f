//! The test kit against the real programs: redis-server and moto_server must be installed
//! (`.ci/run` installs them).

use std::path::Path;
use std::time::Duration;

use wsctl_testkit::{free_port, http_request, wait_for, MotoServer, RedisServer, RespValue, TempDir, TestkitError};

fn process_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still have one, so this also
    // checks that the harness waited for its child.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn redis_starts_answers_stops_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start().expect("start redis-server");
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    redis.ping().expect("PING");

    assert_eq!(redis.cmd(&["SET", "k", "v"]).unwrap(), RespValue::Simple("OK".into()));
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap().as_str(), Some("v"));
    assert_eq!(redis.cmd(&["SADD", "room:{a}:connections", "c2", "c1"]).unwrap().as_int(), Some(2));
    assert_eq!(
        redis.cmd(&["SMEMBERS", "room:{a}:connections"]).unwrap().to_sorted_strings(),
        Some(vec!["c1".to_string(), "c2".to_string()])
    );
    assert_eq!(redis.cmd(&["GET", "missing"]).unwrap(), RespValue::Bulk(None));
    assert!(matches!(redis.cmd(&["NOSUCHCOMMAND"]).unwrap(), RespValue::Error(_)));

    // Fault: the store goes away, then comes back on the same port, empty.
    let pid = redis.pid().expect("running");
    redis.stop().unwrap();
    assert!(!redis.is_running());
    assert!(!process_alive(pid), "redis-server {pid} still alive after stop()");
    assert!(redis.ping().is_err(), "PING must fail while stopped");
    redis.stop().unwrap(); // idempotent

    redis.restart().expect("restart redis-server");
    assert_eq!(redis.port(), port);
    redis.ping().unwrap();
    assert_eq!(redis.cmd(&["GET", "k"]).unwrap(), RespValue::Bulk(None), "no persistence across restarts");

    // restart() while running also works.
    redis.restart().unwrap();
    redis.flushall().unwrap();
    redis.ping().unwrap();

    let pid = redis.pid().unwrap();
    drop(redis);
    assert!(!process_alive(pid), "redis-server {pid} outlived its handle");
}

#[test]
fn redis_servers_run_side_by_side() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    a.cmd(&["SET", "who", "a"]).unwrap();
    assert_eq!(b.cmd(&["GET", "who"]).unwrap(), RespValue::Bulk(None));
}

#[test]
fn redis_extra_args_apply() {
    let redis = RedisServer::start_with_args(&["--requirepass", "s3cret"]).unwrap();
    assert!(matches!(redis.cmd(&["GET", "x"]).unwrap(), RespValue::Error(e) if e.starts_with("NOAUTH")));
    assert!(redis.ping().is_err());
}

#[test]
fn moto_starts_answers_resets_and_restarts() {
    let mut moto = MotoServer::start().expect("start moto_server");
    let port = moto.port();
    assert_eq!(moto.endpoint(), format!("http://127.0.0.1:{port}"));

    let r = moto.request("GET", "/moto-api/", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // A real AWS API call (S3 CreateBucket / ListBuckets; moto accepts unsigned requests).
    let r = moto.request("PUT", "/wsctl-testkit-bucket", &[("Host", "s3.amazonaws.com")], b"").unwrap();
    assert_eq!(r.status, 200, "CreateBucket: {}", r.text());
    let r = moto.request("GET", "/", &[], b"").unwrap();
    assert!(r.text().contains("wsctl-testkit-bucket"), "ListBuckets: {}", r.text());

    // DynamoDB JSON protocol.
    let list_tables = |m: &MotoServer| {
        m.request(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                // moto picks the service from the credential scope.
                ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"),
            ],
            b"{}",
        )
        .unwrap()
    };
    let r = list_tables(&moto);
    assert_eq!(r.status, 200, "ListTables: {}", r.text());
    assert!(r.text().contains("TableNames"), "{}", r.text());

    moto.reset().unwrap();
    let r = moto.request("GET", "/", &[], b"").unwrap();
    assert!(!r.text().contains("wsctl-testkit-bucket"), "reset keeps buckets: {}", r.text());

    let env = moto.aws_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(moto.endpoint()));
    assert_eq!(get("AWS_ACCESS_KEY_ID").as_deref(), Some("testing"));
    assert_eq!(get("AWS_SECRET_ACCESS_KEY").as_deref(), Some("testing"));
    assert_eq!(get("AWS_REGION").as_deref(), Some("us-east-1"));
    assert_eq!(get("AWS_EC2_METADATA_DISABLED").as_deref(), Some("true"));

    let pid = moto.pid().unwrap();
    moto.stop().unwrap();
    assert!(!process_alive(pid), "moto_server {pid} still alive after stop()");
    assert!(moto.request("GET", "/moto-api/", &[], b"").is_err());

    moto.restart().expect("restart moto_server");
    assert_eq!(moto.port(), port);
    assert_eq!(list_tables(&moto).status, 200);

    let pid = moto.pid().unwrap();
    drop(moto);
    assert!(!process_alive(pid), "moto_server {pid} outlived its handle");
}

#[test]
fn tempdir_is_unique_and_removed_on_drop() {
    let a = TempDir::new("wsctl-testkit-t").unwrap();
    let b = TempDir::new("wsctl-testkit-t").unwrap();
    assert_ne!(a.path(), b.path());
    std::fs::create_dir_all(a.join("x/y")).unwrap();
    std::fs::write(a.join("x/y/z.txt"), "hi").unwrap();
    let p = a.path().to_path_buf();
    drop(a);
    assert!(!p.exists());
    let kept = b.keep();
    assert!(kept.exists());
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn wait_for_returns_value_or_times_out() {
    let mut n = 0;
    assert_eq!(
        wait_for(Duration::from_secs(2), || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .unwrap(),
        3
    );
    assert!(wait_for(Duration::from_secs(1), || true).is_ok());
    let r: Result<u8, _> = wait_for(Duration::from_millis(1), || Err::<u8, ()>(()));
    assert!(r.is_err());
    let start = std::time::Instant::now();
    let err = wait_for(Duration::from_millis(150), || false).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(matches!(err, TestkitError::Timeout { .. }), "{err}");
}

#[test]
fn free_port_is_bindable() {
    let p = free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
}

#[test]
fn http_request_reports_connection_refused() {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let err = http_request(addr, "GET", "/", &[], b"", Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, TestkitError::Io { .. }), "{err}");
}

#[test]
fn a_leaked_service_dies_with_the_test_process() {
    if std::env::var_os("WSCTL_TESTKIT_LEAK_CHILD").is_some() {
        // The child run: start a server, never drop it, let the process exit.
        let redis = RedisServer::start().unwrap();
        println!("LEAKED_PID={}", redis.pid().unwrap());
        std::mem::forget(redis);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "services::a_leaked_service_dies_with_the_test_process", "--nocapture"])
        .env("WSCTL_TESTKIT_LEAK_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LEAKED_PID="))
        .unwrap_or_else(|| panic!("no LEAKED_PID in {stdout}"))
        .trim()
        .parse()
        .unwrap();
    wait_for(Duration::from_secs(5), || !process_alive(pid))
        .unwrap_or_else(|_| panic!("redis-server {pid} outlived the test process"));
}

#[test]
fn shared_servers_are_started_once() {
    let a = RedisServer::shared();
    let b = RedisServer::shared();
    assert_eq!(a.port(), b.port());
    a.ping().unwrap();
    let m = MotoServer::shared();
    assert_eq!(m.port(), MotoServer::shared().port());
    assert_eq!(m.request("GET", "/moto-api/", &[], b"").unwrap().status, 200);
}
