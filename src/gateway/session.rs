//! One WebSocket connection after the upgrade: reads frames and runs the `message`
//! handler on them, writes queued frames (coalesced into one flush), enforces the
//! per-connection rate limit, and runs `$disconnect` exactly once at the end.

use super::registry::{CloseRequest, ConnHandle, Outbox, CLOSE_TOO_BIG};
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
    /// The client closed or the transport failed: nothing more to send.
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
    match end {
        End::Close(req) => {
            let frame = CloseFrame { code: req.code, reason: Utf8Bytes::from(req.reason) };
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), socket.send(Message::Close(Some(frame)))).await;
        }
        // After the client's close, tungstenite has queued the answering close frame (RFC 6455
        // §5.5.1); without this flush it is dropped and the client sees 1006.
        End::Peer => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.flush()).await;
        }
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
    loop {
        tokio::select! {
            biased;
            req = handle.closed() => return End::Close(req),
            frame = outbox.recv(handle) => {
                let Some(first) = frame else { return End::Peer };
                // A client that stops reading blocks this write forever; a close request
                // (slow consumer, kick, shutdown) must still end the session.
                tokio::select! {
                    written = write_coalesced(handle, outbox, socket, first) => if written.is_err() { return End::Peer },
                    req = handle.closed() => return End::Close(req),
                }
            }
            inbound = socket.next() => {
                let msg = match inbound {
                    None | Some(Ok(Message::Close(_))) => return End::Peer,
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
                if write_replies(handle, socket, replies).await.is_err() {
                    return End::Peer;
                }
            }
        }
    }
}

/// A read error: oversized frames/messages close with 1009 like API Gateway; anything
/// else means the peer is gone.
fn classify_read_error(e: &axum::Error) -> End {
    let text = e.to_string();
    if text.contains("too long") || text.contains("too big") || text.contains("Space limit exceeded") {
        End::Close(CloseRequest { code: CLOSE_TOO_BIG, reason: "message too big".into() })
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
