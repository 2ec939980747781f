//! One WebSocket connection after the upgrade: reads frames and runs the `message`
//! handler on them, writes queued frames (coalesced into one flush), enforces the
//! per-connection rate limit, and runs `$disconnect` exactly once at the end.

use super::registry::{
    CloseRequest, ConnHandle, Outbox, CLOSE_INVALID_PAYLOAD, CLOSE_PROTOCOL_ERROR, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG,
};
use super::Gateway;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use wsctl_handlers::auth::Identity;
use wsctl_handlers::error::HandlerError;
use wsctl_handlers::protocol::{ErrorCode, Frame};
use wsctl_handlers::ratelimit::TokenBucket;
use wsctl_handlers::service::Caller;

/// Frames written before one flush.
const COALESCE_MAX: usize = 64;

/// How a session ended.
enum End {
    /// The gateway closes with this code.
    Close(CloseRequest),
    /// The client sent a close frame: the reply tungstenite queued is flushed (RFC 6455
    /// close handshake), so the client sees its own code instead of 1006.
    PeerClosed,
    /// The transport failed: nothing more to send.
    Peer,
}

/// Runs the connection until it ends, then cleans up.
pub async fn run(
    gw: Arc<Gateway>,
    handle: Arc<ConnHandle>,
    identity: Identity,
    mut outbox: Outbox,
    mut socket: WebSocket,
) {
    // From here on the sweeper's upgrade deadline no longer applies to this connection.
    handle.upgraded.store(true, Relaxed);
    let end = serve(&gw, &handle, &identity, &mut outbox, &mut socket).await;
    let grace = std::time::Duration::from_secs(2);
    match end {
        End::Close(req) => {
            if req.code == CLOSE_SLOW_CONSUMER {
                gw.services.metrics.slow_consumers.fetch_add(1, Relaxed);
            }
            let frame = CloseFrame { code: req.code, reason: Utf8Bytes::from(req.reason) };
            let _ = tokio::time::timeout(grace, socket.send(Message::Close(Some(frame)))).await;
        }
        End::PeerClosed => {
            let _ = tokio::time::timeout(grace, socket.flush()).await;
        }
        End::Peer => {}
    }
    drop(socket);
    gw.finish(&handle).await;
}

async fn serve(
    gw: &Gateway,
    handle: &ConnHandle,
    identity: &Identity,
    outbox: &mut Outbox,
    socket: &mut WebSocket,
) -> End {
    let limits = &gw.services.limits;
    let mut bucket = TokenBucket::new(limits.requests_per_second, limits.request_burst);
    let caller = Caller { connection_id: &handle.id, identity, request_id: None };
    let write_deadline = std::time::Duration::from_secs(limits.write_timeout_secs);
    loop {
        tokio::select! {
            biased;
            req = handle.closed() => return End::Close(req),
            frame = outbox.recv(handle) => {
                let Some(first) = frame else { return End::Peer };
                // A client that stops reading blocks this write once the kernel's buffers
                // are full: the write deadline, or a close requested meanwhile (the queue
                // overflowed, a kick, shutdown), ends it instead of waiting forever.
                let write = tokio::time::timeout(write_deadline, write_coalesced(handle, outbox, socket, first));
                tokio::select! {
                    written = write => match written {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Peer,
                        Err(_) => return write_timed_out(),
                    },
                    req = handle.closed() => return End::Close(req),
                }
            }
            inbound = socket.next() => {
                let msg = match inbound {
                    Some(Ok(Message::Close(_))) => return End::PeerClosed,
                    None => return End::Peer,
                    Some(Err(e)) => return classify_read_error(&e),
                    Some(Ok(m)) => m,
                };
                handle.touch();
                let replies = match msg {
                    Message::Text(text) => {
                        handle.messages_in.fetch_add(1, Relaxed);
                        if !bucket.try_take() {
                            let err = HandlerError::new(
                                ErrorCode::RateLimited,
                                format!("more than {} requests/s on this connection; slow down and retry", limits.requests_per_second),
                            );
                            // Echo the request's id, as the handlers do for their own refusals.
                            let id = wsctl_handlers::protocol::parse(text.as_str()).id;
                            vec![gw.services.error(&err, caller, id)]
                        } else {
                            gw.services.message(caller, text.as_str()).await
                        }
                    }
                    Message::Binary(_) => {
                        handle.messages_in.fetch_add(1, Relaxed);
                        let err = HandlerError::new(ErrorCode::UnsupportedFrame, "binary frames are not supported; send JSON text frames");
                        vec![gw.services.error(&err, caller, None)]
                    }
                    // tungstenite answers pings itself; both count as activity.
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
                };
                match tokio::time::timeout(write_deadline, write_replies(handle, socket, replies)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return End::Peer,
                    Err(_) => return write_timed_out(),
                }
            }
        }
    }
}

/// A write that the client did not take within the write timeout: a slow consumer.
fn write_timed_out() -> End {
    End::Close(CloseRequest {
        code: CLOSE_SLOW_CONSUMER,
        reason: "slow consumer: nothing read within the write timeout".into(),
    })
}

/// A read error, closed with the RFC 6455 code for its cause: 1009 for oversized frames
/// and messages (as API Gateway), 1007 for a text message that is not UTF-8, 1002 for a
/// protocol violation; anything else (I/O) means the peer is gone. axum hides the
/// tungstenite error type, so its stable messages are matched.
fn classify_read_error(e: &axum::Error) -> End {
    let text = e.to_string();
    let close = |code: u16, reason: &str| End::Close(CloseRequest { code, reason: reason.into() });
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit exceeded") {
        close(CLOSE_TOO_BIG, "message too big")
    } else if text.contains("UTF-8") {
        close(CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8")
    } else if text.contains("protocol error") {
        close(CLOSE_PROTOCOL_ERROR, "WebSocket protocol error")
    } else {
        End::Peer
    }
}

async fn write_replies(handle: &ConnHandle, socket: &mut WebSocket, replies: Vec<Frame>) -> Result<(), axum::Error> {
    let n = replies.len() as u64;
    for frame in replies {
        let text = Utf8Bytes::try_from(frame.bytes().clone()).unwrap_or_else(|_| Utf8Bytes::from_static(""));
        socket.feed(Message::Text(text)).await?;
    }
    socket.flush().await?;
    handle.messages_out.fetch_add(n, Relaxed);
    Ok(())
}

async fn write_coalesced(
    handle: &ConnHandle,
    outbox: &mut Outbox,
    socket: &mut WebSocket,
    first: Utf8Bytes,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    let mut n = 1u64;
    while (n as usize) < COALESCE_MAX {
        match outbox.try_recv(handle) {
            Some(f) => {
                socket.feed(Message::Text(f)).await?;
                n += 1;
            }
            None => break,
        }
    }
    socket.flush().await?;
    handle.messages_out.fetch_add(n, Relaxed);
    handle.touch();
    Ok(())
}
