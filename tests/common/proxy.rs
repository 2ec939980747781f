//! A TCP proxy on loopback that a test can cut (every connection dropped, new ones
//! refused) and heal, to partition a client from Redis without losing Redis's data.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
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
