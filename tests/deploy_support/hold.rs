//! An HTTP/1.1 proxy in front of moto that forwards every request except one: the first
//! whose body contains all of a set of strings (e.g. `Action=ExecuteChangeSet` and a stack
//! name) is held and never forwarded. The test then knows the client is waiting on exactly
//! that call and can interrupt or kill it there, with the call not having reached the
//! service — the moment between a change set's creation and its execution.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Strings the request body to hold must contain; `None` once one was held.
    rule: Option<Vec<String>>,
    held: bool,
}

/// The proxy. Its listener thread lives as long as the test process (it only forwards);
/// a held connection ends when its client closes it.
pub struct HoldProxy {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl HoldProxy {
    /// Listens on a free loopback port and forwards to `upstream`; holds the first request
    /// whose body contains every string of `hold`.
    pub fn start(upstream: SocketAddr, hold: &[&str]) -> HoldProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new((
            Mutex::new(State { rule: Some(hold.iter().map(|s| (*s).to_owned()).collect()), held: false }),
            Condvar::new(),
        ));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || serve(client, upstream, &shared));
            }
        });
        HoldProxy { addr, state }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the request to hold has arrived; panics after `timeout`.
    pub fn wait_held(&self, timeout: Duration) {
        let (lock, cvar) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().expect("proxy state");
        while !state.held {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the request to hold never came");
            state = cvar.wait_timeout(state, left).expect("proxy state").0;
        }
    }
}

/// One client connection: requests in, responses out, until either side closes.
fn serve(mut client: TcpStream, upstream: SocketAddr, state: &(Mutex<State>, Condvar)) {
    while let Some(request) = read_message(&mut client) {
        let hold = {
            let (lock, cvar) = state;
            let mut s = lock.lock().expect("proxy state");
            let body = String::from_utf8_lossy(&request.body);
            let matches = s.rule.as_ref().is_some_and(|rule| rule.iter().all(|needle| body.contains(needle.as_str())));
            if matches {
                s.rule = None;
                s.held = true;
                cvar.notify_all();
            }
            matches
        };
        if hold {
            // Never forwarded: wait for the client to go away.
            let mut sink = [0u8; 1024];
            while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        let Ok(mut server) = TcpStream::connect(upstream) else { return };
        if server.write_all(&request.raw).is_err() {
            return;
        }
        let Some(response) = read_message(&mut server) else { return };
        if client.write_all(&response.raw).is_err() {
            return;
        }
    }
}

struct Message {
    /// Head and body exactly as received.
    raw: Vec<u8>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 message framed by `Content-Length` (what the SDK and moto send).
fn read_message(stream: &mut TcpStream) -> Option<Message> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    }
    let body = raw[head_end..head_end + length].to_vec();
    Some(Message { raw, body })
}
