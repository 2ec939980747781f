//! An HTTP/1.1 proxy in front of moto that forwards everything and records, per request,
//! the IAM action it needs (`cloudformation:CreateChangeSet`, `s3:PutObject`, …), read
//! from the signed request itself: the service from the SigV4 credential scope, the
//! operation from the query `Action=`, the JSON `X-Amz-Target`, or the REST method and
//! path. A request it cannot name is recorded as `?service METHOD path`, so a test that
//! checks the actions against a policy fails on it instead of passing it by.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The proxy and what it recorded.
pub struct RecordProxy {
    addr: SocketAddr,
    actions: Arc<Mutex<Vec<String>>>,
}

impl RecordProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> RecordProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let actions = Arc::new(Mutex::new(Vec::new()));
        let shared = actions.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || serve(client, upstream, &shared));
            }
        });
        RecordProxy { addr, actions }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded since the last call, deduplicated.
    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.actions.lock().expect("recorded actions")).into_iter().collect()
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, actions: &Mutex<Vec<String>>) {
    while let Some(request) = read_message(&mut client, false) {
        actions.lock().expect("recorded actions").push(action_of(&request));
        // A response to HEAD carries Content-Length but no body.
        let head_request = request.head.starts_with("HEAD ");
        let Ok(mut server) = TcpStream::connect(upstream) else { return };
        if server.write_all(&request.raw).is_err() {
            return;
        }
        let Some(response) = read_message(&mut server, head_request) else { return };
        if client.write_all(&response.raw).is_err() {
            return;
        }
    }
}

struct Message {
    raw: Vec<u8>,
    head: String,
    body: Vec<u8>,
}

fn read_message(stream: &mut TcpStream, no_body: bool) -> Option<Message> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    let length: usize = if no_body {
        0
    } else {
        lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    }
    let body = raw[head_end..head_end + length].to_vec();
    Some(Message { raw, head, body })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The IAM action a request needs.
fn action_of(m: &Message) -> String {
    let request_line = m.head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // SigV4: Credential=AKID/DATE/REGION/SERVICE/aws4_request.
    let service = header(&m.head, "authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_owned();
    // CloudWatch signs as `monitoring`; its IAM actions are `cloudwatch:…`.
    let service = if service == "monitoring" { "cloudwatch".to_owned() } else { service };
    let body = String::from_utf8_lossy(&m.body);
    if let Some(t) = header(&m.head, "x-amz-target") {
        return format!("{service}:{}", t.rsplit('.').next().unwrap_or(t));
    }
    if let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return format!("{service}:{action}");
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let named = match (service.as_str(), method, segments.as_slice()) {
        ("s3", "HEAD" | "GET", [_bucket, _key, ..]) => Some("s3:GetObject".to_owned()),
        ("s3", "PUT", [_bucket, _key, ..]) => Some("s3:PutObject".to_owned()),
        ("s3", "DELETE", [_bucket, _key, ..]) => Some("s3:DeleteObject".to_owned()),
        ("s3", "HEAD", [_bucket]) => Some("s3:ListBucket".to_owned()),
        ("s3", "GET", [_bucket]) if query.contains("versions") => Some("s3:ListBucketVersions".to_owned()),
        ("s3", "GET", [_bucket]) => Some("s3:ListBucket".to_owned()),
        ("lambda", "GET", ["2015-03-31", "functions", _, "versions"]) => Some("lambda:ListVersionsByFunction".into()),
        ("lambda", "GET", ["2015-03-31", "functions", _, "aliases"]) => Some("lambda:ListAliases".into()),
        ("lambda", "GET", ["2015-03-31", "functions", _, "aliases", _]) => Some("lambda:GetAlias".into()),
        ("lambda", "GET", ["2015-03-31", "functions", _, "configuration"]) => {
            Some("lambda:GetFunctionConfiguration".into())
        }
        ("lambda", "GET", ["2015-03-31", "functions", _]) => Some("lambda:GetFunction".into()),
        ("lambda", "DELETE", ["2015-03-31", "functions", _]) => Some("lambda:DeleteFunction".into()),
        ("lambda", "POST", ["2015-03-31", "functions", _, "invocations"]) => Some("lambda:InvokeFunction".into()),
        ("apigateway", m, ["v2", ..]) => Some(format!("apigateway:{m}")),
        ("execute-api", "GET" | "DELETE" | "POST", [.., "@connections", _]) => {
            Some("execute-api:ManageConnections".into())
        }
        _ => None,
    };
    named.unwrap_or_else(|| format!("?{service} {method} {path}"))
}
