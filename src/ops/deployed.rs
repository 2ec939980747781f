//! The admin requests a deployed stage serves without its `admin` function: API keys and
//! the kick of a connection live in DynamoDB and the management API, which wsctl reaches
//! directly (Redis, inside the VPC, is only reached through the function). Each answers
//! with the [`AdminReply`] the function would give, so the commands have one path.

use super::target::{Admin, AdminError, Answer, Deployed};
use anyhow::{anyhow, Context};
use wsctl_handlers::admin::{self, AdminReply, AdminRequest, KeyView, MAX_PAGE};
use wsctl_handlers::auth::KeyLimits;
use wsctl_handlers::limits::Limits;
use wsctl_handlers::protocol::ErrorCode;
use wsctl_handlers::sender::Sender;
use wsctl_handlers::store::{now_ms, ConnectionStore, KeyStore};

/// Whether [`call`] serves `request` (else the `admin` function does).
pub fn serves(request: &AdminRequest) -> bool {
    matches!(
        request,
        AdminRequest::CreateKey { .. }
            | AdminRequest::ListKeys
            | AdminRequest::RevokeKey { .. }
            | AdminRequest::DeleteKey { .. }
            | AdminRequest::KickConnection { .. }
    )
}

/// Serves one of the requests [`serves`] names on the stage's tables and management API.
pub async fn call(d: &Deployed, request: &AdminRequest) -> Result<Answer, AdminError> {
    let (reply, warnings) = match request {
        AdminRequest::CreateKey { name, scopes, max_connections, room_prefix, expires_at } => {
            let limits = KeyLimits {
                max_connections: *max_connections,
                room_prefix: room_prefix.clone(),
                expires_at: *expires_at,
            };
            (create_key(d, name, scopes, limits).await?, Vec::new())
        }
        AdminRequest::DeleteKey { key_id } => (delete_key(d, key_id).await?, Vec::new()),
        AdminRequest::ListKeys => (list_keys(d).await?, Vec::new()),
        AdminRequest::RevokeKey { key_id, disconnect } => (revoke_key(d, key_id, *disconnect).await?, Vec::new()),
        AdminRequest::KickConnection { connection_id } => {
            let mut warnings = Vec::new();
            let reply = kick_connection(d, connection_id, &mut warnings).await?;
            (reply, warnings)
        }
        other => return Err(anyhow!("{other:?} is served by the stage's admin function").into()),
    };
    Ok(Answer { reply, warnings })
}

async fn create_key(d: &Deployed, name: &str, scopes: &str, limits: KeyLimits) -> Result<AdminReply, AdminError> {
    // The stage's own `max_room_name_len` lives in its handlers' environment; a prefix
    // longer than a stage allows only means no room of it can be named.
    let new = admin::new_key(name, scopes, limits, Limits::default().max_room_name_len)
        .map_err(|e| AdminError::refused(e.code, e.message))?;
    d.key_store()
        .await?
        .create(&new.record)
        .await
        .with_context(|| format!("cannot write the API-keys table of stage '{}'", d.stage))?;
    Ok(AdminReply::KeyCreated { key: new.raw, record: KeyView::from(&new.record) })
}

async fn delete_key(d: &Deployed, id: &str) -> Result<AdminReply, AdminError> {
    let record = d
        .key_store()
        .await?
        .delete(id)
        .await
        .with_context(|| format!("cannot delete from the API-keys table of stage '{}'", d.stage))?
        .ok_or_else(|| AdminError::refused(ErrorCode::NotFound, format!("key {id} not found")))?;
    Ok(AdminReply::KeyDeleted { record: KeyView::from(&record) })
}

async fn list_keys(d: &Deployed) -> Result<AdminReply, AdminError> {
    let records = d
        .key_store()
        .await?
        .list()
        .await
        .with_context(|| format!("cannot read the API-keys table of stage '{}'", d.stage))?;
    Ok(AdminReply::Keys { keys: records.iter().map(KeyView::from).collect() })
}

/// Marks the key revoked in the table, then (with `disconnect`) closes each of its
/// connections, found by a Query on the `byKey` index, with DeleteConnection.
async fn revoke_key(d: &Deployed, id: &str, disconnect: bool) -> Result<AdminReply, AdminError> {
    let keys = d.key_store().await?;
    let record = keys
        .revoke(id, now_ms())
        .await
        .with_context(|| format!("cannot update the API-keys table of stage '{}'", d.stage))?
        .ok_or_else(|| AdminError::refused(ErrorCode::NotFound, format!("key {id} not found")))?;
    if !disconnect {
        return Ok(AdminReply::KeyRevoked { record: KeyView::from(&record), disconnected: 0 });
    }
    let connections = d.connection_store().await?;
    let sender = d.sender().await?;
    let mut closed = 0;
    let mut failures = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = connections
            .list_by_key(id, cursor.as_deref(), MAX_PAGE)
            .await
            .with_context(|| format!("cannot read the connections table of stage '{}'", d.stage))?;
        for c in &page.items {
            match sender.disconnect(&c.connection_id).await {
                Ok(true) => closed += 1,
                // Already closed: drop its leftover record.
                Ok(false) => {
                    connections
                        .delete(&c.connection_id)
                        .await
                        .with_context(|| format!("cannot update the connections table of stage '{}'", d.stage))?;
                }
                Err(e) => failures.push(format!("{}: {e}", c.connection_id)),
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if !failures.is_empty() {
        return Err(anyhow!(
            "key {id} is revoked (it cannot connect again), but {} of its connections could not be closed: {}; run the command again",
            failures.len(),
            failures.join("; ")
        )
        .into());
    }
    Ok(AdminReply::KeyRevoked { record: KeyView::from(&record), disconnected: closed })
}

/// DeleteConnection; when the connection is already gone, removes its stale record (and,
/// through the admin function, its room memberships: a failure there is a warning).
async fn kick_connection(d: &Deployed, id: &str, warnings: &mut Vec<String>) -> Result<AdminReply, AdminError> {
    let kicked = |was_live| AdminReply::Kicked { connection_id: id.to_owned(), was_live };
    let sender = d.sender().await?;
    let was_live = sender
        .disconnect(id)
        .await
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("DeleteConnection {id} failed on stage '{}'", d.stage))?;
    if was_live {
        return Ok(kicked(true));
    }
    let store = d.connection_store().await?;
    let had_record = store
        .delete(id)
        .await
        .with_context(|| format!("cannot update the connections table of stage '{}'", d.stage))?
        .is_some();
    if !had_record {
        return Err(AdminError::refused(ErrorCode::NotFound, format!("connection {id} not found")));
    }
    // The record is gone; the admin function also removes Redis memberships.
    let cleanup = async {
        Admin::Lambda(d.admin_function().await?)
            .call(&AdminRequest::KickConnection { connection_id: id.to_owned() })
            .await
    };
    match cleanup.await {
        Ok(_) => {}
        // Not found there means nothing was left in Redis either.
        Err(e) if e.is_not_found() => {}
        Err(e) => warnings.push(format!("room memberships not cleaned (they expire with the connection TTL): {e:#}")),
    }
    Ok(kicked(false))
}
