//! A minimal blocking HTTP/1.1 client over a std `TcpStream` (one request per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::TestkitError;

/// The answer to [`http_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers in the order received (names as sent by the server).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` to `addr` and reads the whole
/// response. `headers` are added as given; `Content-Length` is set here, and `Host` too
/// unless `headers` has one.
/// Handy for moto's `/moto-api/` and for `wsctl dev`'s `/@connections/{id}` endpoints.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, TestkitError> {
    let stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(2)))
        .map_err(|e| TestkitError::io(format!("connect to {addr}"), e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| TestkitError::io("set socket timeouts", e))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut w = &stream;
    w.write_all(req.as_bytes())
        .and_then(|_| w.write_all(body))
        .map_err(|e| TestkitError::io(format!("send {method} {path} to {addr}"), e))?;

    let mut r = BufReader::new(&stream);
    let status_line = read_line(&mut r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| TestkitError::protocol(format!("bad HTTP status line {status_line:?} from {addr}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = HttpResponse { status, headers, body: Vec::new() };
    let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = resp.header("content-length").and_then(|v| v.parse::<usize>().ok());
    let io = |e| TestkitError::io(format!("read the response to {method} {path} from {addr}"), e);
    if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if chunked {
        loop {
            let size_line = read_line(&mut r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| TestkitError::protocol(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..]).map_err(io)?;
            read_line(&mut r)?;
        }
    } else if let Some(n) = length {
        resp.body.resize(n, 0);
        r.read_exact(&mut resp.body).map_err(io)?;
    } else {
        r.read_to_end(&mut resp.body).map_err(io)?;
    }
    Ok(resp)
}

fn read_line(r: &mut impl BufRead) -> Result<String, TestkitError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| TestkitError::io("read an HTTP response", e))?;
    if line.is_empty() {
        return Err(TestkitError::protocol("the server closed the connection before answering"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
