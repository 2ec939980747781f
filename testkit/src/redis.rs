//! A real `redis-server` on a free loopback port, and a tiny RESP client to poke at it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::process::{find_program, Service};
use crate::TestkitError;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` process of its own, on `127.0.0.1:<free port>`, with persistence off
/// and its working directory in a temp dir. Killed on drop.
///
/// The binary is `$WSCTL_REDIS_SERVER` if set, else `redis-server` from `PATH` or
/// `/usr/bin` (Debian's package: `apt-get install -y redis-server`).
///
/// ```no_run
/// let mut redis = wsctl_testkit::RedisServer::start().unwrap();
/// let url = redis.url(); // redis://127.0.0.1:PORT
/// redis.stop().unwrap(); // a fault: the store is gone
/// redis.restart().unwrap(); // back on the same port, empty
/// ```
#[derive(Debug)]
pub struct RedisServer {
    service: Service,
}

/// The command line every test `redis-server` starts with: loopback on `port`, in the
/// foreground, no persistence.
pub(crate) fn base_args(port: u16) -> Vec<OsString> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        ".",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

/// Ready once `PING` answers `PONG`, or `NOAUTH` when started with `--requirepass`.
pub(crate) fn probe(port: u16) -> bool {
    match resp_command(port, &[b"PING"]) {
        Ok(RespValue::Simple(s)) => s == "PONG",
        Ok(RespValue::Error(e)) => e.starts_with("NOAUTH"),
        _ => false,
    }
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer, TestkitError> {
        RedisServer::start_with_args(&[])
    }

    /// Like [`RedisServer::start`], with extra command-line options appended, e.g.
    /// `&["--requirepass", "secret"]` or `&["--maxmemory", "1mb"]`.
    ///
    /// With `--requirepass` the readiness probe still works (`PING` answers `NOAUTH`,
    /// which proves the server is up).
    pub fn start_with_args(extra: &[&str]) -> Result<RedisServer, TestkitError> {
        let program = find_program("redis-server", "WSCTL_REDIS_SERVER", "apt-get install -y redis-server")?;
        let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
        let mut service = Service::new(
            "redis-server",
            program,
            Box::new(move |port| {
                let mut args = base_args(port);
                args.extend(extra.iter().cloned());
                args
            }),
        )?;
        service.start(READY_TIMEOUT, &probe)?;
        Ok(RedisServer { service })
    }

    /// One server for the whole test binary, started on first use and killed when the
    /// binary exits. Tests that share it must keep to their own keys (e.g. a unique room
    /// or connection id per test); fault tests ([`RedisServer::stop`]) need their own.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn shared() -> &'static RedisServer {
        static SHARED: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| RedisServer::start().unwrap_or_else(|e| panic!("start the shared redis-server: {e}")))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.service.port)
    }

    /// The TCP port it listens on (kept across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.service.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.service.port))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// Stops the server (SIGKILL, then reaps it): clients see connection errors until
    /// [`RedisServer::restart`]. A no-op when already stopped.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        self.service.kill();
        Ok(())
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits
    /// until it answers `PING`. The data is gone: persistence is off.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.service.restart(READY_TIMEOUT, &probe)
    }

    /// `true` while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.service.check_alive().is_ok()
    }

    /// Sends `PING`; `Ok` on `PONG`.
    pub fn ping(&self) -> Result<(), TestkitError> {
        match self.cmd(&["PING"])? {
            RespValue::Simple(s) if s == "PONG" => Ok(()),
            other => Err(TestkitError::protocol(format!("PING answered {other:?}"))),
        }
    }

    /// Runs one command on a fresh connection and returns the reply (a Redis error reply
    /// is `Ok(RespValue::Error(..))`). For inspecting state in tests:
    /// `redis.cmd(&["SMEMBERS", "room:{tvl:chain:ethereum}:connections"])`.
    pub fn cmd(&self, args: &[&str]) -> Result<RespValue, TestkitError> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        resp_command(self.service.port, &args)
    }

    /// `FLUSHALL`: empties every database.
    pub fn flushall(&self) -> Result<(), TestkitError> {
        match self.cmd(&["FLUSHALL"])? {
            RespValue::Simple(s) if s == "OK" => Ok(()),
            other => Err(TestkitError::protocol(format!("FLUSHALL answered {other:?}"))),
        }
    }

    /// The last lines the server wrote to its log (for assertion messages).
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$N` bulk string; `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*N` array; `None` for the null array `*-1`.
    Array(Option<Vec<RespValue>>),
}

impl RespValue {
    /// The value as text for simple and bulk strings; `None` otherwise.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RespValue::Simple(s) => Some(s),
            RespValue::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as an integer for `:N` replies; `None` otherwise.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            RespValue::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of an array reply rendered as text (e.g. the members of `SMEMBERS`),
    /// sorted; `None` if this is not an array of strings.
    pub fn to_sorted_strings(&self) -> Option<Vec<String>> {
        match self {
            RespValue::Array(Some(items)) => {
                let mut v = items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
                v.sort();
                Some(v)
            }
            RespValue::Array(None) => Some(Vec::new()),
            _ => None,
        }
    }
}

pub(crate) fn resp_command(port: u16, args: &[&[u8]]) -> Result<RespValue, TestkitError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| TestkitError::io(format!("connect to redis at {addr}"), e))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| TestkitError::io("set socket timeouts", e))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&req).map_err(|e| TestkitError::io(format!("write to redis at {addr}"), e))?;
    read_value(&mut BufReader::new(&stream))
}

fn read_line(r: &mut impl BufRead) -> Result<String, TestkitError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| TestkitError::io("read from redis", e))?;
    if !line.ends_with(b"\r\n") {
        return Err(TestkitError::protocol("redis closed the connection mid-reply"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| TestkitError::protocol("non-UTF-8 RESP header"))
}

fn read_value(r: &mut impl BufRead) -> Result<RespValue, TestkitError> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| TestkitError::protocol("empty RESP line"))?;
    let int = |s: &str| s.parse::<i64>().map_err(|_| TestkitError::protocol(format!("bad RESP integer {s:?}")));
    match kind {
        "+" => Ok(RespValue::Simple(rest.to_string())),
        "-" => Ok(RespValue::Error(rest.to_string())),
        ":" => Ok(RespValue::Integer(int(rest)?)),
        "$" => {
            let n = int(rest)?;
            if n < 0 {
                return Ok(RespValue::Bulk(None));
            }
            let mut buf = vec![0; n as usize + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(|e| TestkitError::io("read a RESP bulk string", e))?;
            buf.truncate(n as usize);
            Ok(RespValue::Bulk(Some(buf)))
        }
        "*" => {
            let n = int(rest)?;
            if n < 0 {
                return Ok(RespValue::Array(None));
            }
            (0..n).map(|_| read_value(r)).collect::<Result<Vec<_>, _>>().map(|v| RespValue::Array(Some(v)))
        }
        other => Err(TestkitError::protocol(format!("unknown RESP type {other:?}"))),
    }
}
