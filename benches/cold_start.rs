//! Handler start-up: the time from spawning a Lambda binary to its first
//! `GET /2018-06-01/runtime/invocation/next` on a Runtime API socket served here — the
//! moment Lambda counts the function as initialized. Each binary starts with the same
//! environment the templates set (tables, Redis URL, management endpoint); clients are
//! created at init, Redis connects lazily.
//!
//! `cargo build --profile lambda -p wsctl-handlers --bins` first, then
//! `cargo bench --bench cold_start -- [DIR] [RUNS]` (DIR defaults to the `lambda` profile's
//! output directory; RUNS to 20). Prints p50/p90/max per binary and one JSON line each.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 6] = ["authorizer", "connect", "disconnect", "message", "publish", "admin"];

fn default_dir() -> PathBuf {
    // target/release/deps/cold_start-… → target/lambda
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).map(|t| t.join("lambda")).unwrap_or_else(|| PathBuf::from("target/lambda"))
}

/// Milliseconds until the binary asks the Runtime API for its first event.
fn start_to_ready(bin: &PathBuf) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind runtime API");
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("CONNECTIONS_TABLE", "bench-connections")
        .env("API_KEYS_TABLE", "bench-keys")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("WS_MANAGEMENT_ENDPOINT", "http://127.0.0.1:1/bench")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().expect("runtime API request");
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).unwrap_or(0);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert!(String::from_utf8_lossy(&buf[..n]).contains("/runtime/invocation/next"), "not a next-event request");
    let _ = conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    ms
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let dir = args.first().map(PathBuf::from).unwrap_or_else(default_dir);
    let runs: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(20);
    println!("start to ready, {runs} runs each, binaries in {}", dir.display());
    println!("{:<11} {:>8} {:>8} {:>8} {:>10}", "function", "p50 ms", "p90 ms", "max ms", "size MiB");
    for f in FUNCTIONS {
        let bin = dir.join(f);
        let size = std::fs::metadata(&bin)
            .unwrap_or_else(|_| {
                panic!("{} missing: cargo build --profile lambda -p wsctl-handlers --bins", bin.display())
            })
            .len();
        let mut t: Vec<f64> = (0..runs).map(|_| start_to_ready(&bin)).collect();
        t.sort_by(f64::total_cmp);
        let pct = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
        let mib = size as f64 / 1048576.0;
        println!("{f:<11} {:>8.2} {:>8.2} {:>8.2} {mib:>10.2}", pct(0.5), pct(0.9), t[t.len() - 1]);
        println!(
            "{}",
            serde_json::json!({"scenario": "cold_start", "function": f, "runs": runs, "p50_ms": pct(0.5),
                "p90_ms": pct(0.9), "max_ms": t[t.len() - 1], "binary_bytes": size})
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
