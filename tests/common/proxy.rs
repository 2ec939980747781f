//! Loopback proxies for fault tests: a TCP proxy that a test can cut (every connection
//! dropped, new ones refused) and heal, to partition a client from Redis without losing
//! Redis's data; and a WebSocket proxy that silently stops passing fan-out messages to
//! some connections, as the gateway did when it dropped connections from its registry.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; it stops when dropped.
pub struct TcpProxy {
    /// Address clients connect to.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let (c, e) = (cut.clone(), epoch.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if c.load(SeqCst) {
                    drop(client); // refused while cut
                    continue;
                }
                let (c, e) = (c.clone(), e.clone());
                let my_epoch = e.load(SeqCst);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let watch = async {
                        while !c.load(SeqCst) && e.load(SeqCst) == my_epoch {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = watch => {}
                    }
                });
            }
        });
        TcpProxy { addr, cut, epoch, task }
    }

    /// Drops every proxied connection and refuses new ones; returns once the proxied
    /// connections have seen the cut.
    pub async fn cut(&self) {
        self.epoch.fetch_add(1, SeqCst);
        self.cut.store(true, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.cut.store(false, SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket proxy that, on every other connection it accepts (the 2nd, 4th, …), drops
/// the server's `{"type":"message",…}` text frames once the connection is `after` old. Replies
/// (`subscribed`, `pong`, `published`, …) still pass: the socket stays open and answers
/// pings, but gets no fan-out. It stops when dropped.
pub struct MuteProxy {
    /// Address clients connect to (the same path and query as the target's URL).
    pub addr: SocketAddr,
    /// Connections muted so far.
    pub muted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MuteProxy {
    /// Proxies a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr, after: Duration) -> MuteProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let muted = Arc::new(AtomicU64::new(0));
        let m = muted.clone();
        let task = tokio::spawn(async move {
            let mut n: u64 = 0;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                let mute = n.is_multiple_of(2);
                let m = m.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = async {
                        let born = Instant::now();
                        let mut counted = false;
                        let mut buf = Vec::new();
                        let mut chunk = vec![0u8; 16 * 1024];
                        // the HTTP response to the upgrade, as is
                        loop {
                            let Ok(k) = sr.read(&mut chunk).await else { return };
                            if k == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..k]);
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                if cw.write_all(&buf[..end + 4]).await.is_err() {
                                    return;
                                }
                                buf.drain(..end + 4);
                                break;
                            }
                        }
                        // then frame by frame (server frames are unmasked)
                        loop {
                            while let Some(len) = frame_len(&buf) {
                                let (opcode, payload) = (buf[0] & 0x0f, &buf[len - payload_len(&buf)..len]);
                                let drop_it = mute
                                    && opcode == 1
                                    && born.elapsed() >= after
                                    && payload.starts_with(b"{\"type\":\"message\"");
                                if drop_it {
                                    if !counted {
                                        counted = true;
                                        m.fetch_add(1, SeqCst);
                                    }
                                } else if cw.write_all(&buf[..len]).await.is_err() {
                                    return;
                                }
                                buf.drain(..len);
                            }
                            let Ok(k) = sr.read(&mut chunk).await else { return };
                            if k == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..k]);
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = down => {}
                    }
                });
            }
        });
        MuteProxy { addr, muted, task }
    }
}

/// Length of the unmasked WebSocket frame at the start of `b` (header + payload), if all
/// of it is there.
fn frame_len(b: &[u8]) -> Option<usize> {
    let (header, payload) = frame_header(b)?;
    (b.len() >= header + payload).then_some(header + payload)
}

fn payload_len(b: &[u8]) -> usize {
    frame_header(b).map_or(0, |h| h.1)
}

fn frame_header(b: &[u8]) -> Option<(usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let mask = if b[1] & 0x80 != 0 { 4 } else { 0 };
    match b[1] & 0x7f {
        126 if b.len() >= 4 => Some((4 + mask, u16::from_be_bytes([b[2], b[3]]) as usize)),
        127 if b.len() >= 10 => {
            let n = u64::from_be_bytes(b[2..10].try_into().ok()?);
            Some((10 + mask, n as usize))
        }
        126 | 127 => None,
        n => Some((2 + mask, n as usize)),
    }
}

impl Drop for MuteProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
