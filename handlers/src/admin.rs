//! Operator requests: the typed JSON the `admin` Lambda (and the local gateway's
//! `/@admin` endpoint) accept from `wsctl`, and their typed replies.

use crate::auth::{self, KeyRecord, Scopes};
use crate::error::HandlerError;
use crate::protocol::ErrorCode;
use crate::room::RoomName;
use crate::sender::LiveInfo;
use crate::service::{PublishReport, Services};
use crate::store::{now_ms, ConnectionRecord, Page, RoomInfo};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest page an operator listing returns at once.
pub const MAX_PAGE: usize = 1000;

/// A request from `wsctl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// One page of live connections, optionally of one key or one room.
    ListConnections {
        /// Only this key's connections.
        #[serde(default)]
        key_id: Option<String>,
        /// Only this room's members.
        #[serde(default)]
        room: Option<String>,
        /// Continue after this cursor.
        #[serde(default)]
        cursor: Option<String>,
        /// Page size (at most [`MAX_PAGE`]).
        limit: usize,
    },
    /// Everything known about one connection.
    ShowConnection {
        /// Connection id.
        connection_id: String,
    },
    /// Close a connection (its `$disconnect` cleanup runs).
    KickConnection {
        /// Connection id.
        connection_id: String,
    },
    /// One page of rooms whose name starts with `prefix`.
    ListRooms {
        /// Name prefix ("" for all).
        #[serde(default)]
        prefix: String,
        /// Continue after this cursor.
        #[serde(default)]
        cursor: Option<String>,
        /// Page size (at most [`MAX_PAGE`]).
        limit: usize,
    },
    /// One room and its members.
    ShowRoom {
        /// Room name.
        room: String,
    },
    /// Publish to a room.
    Publish {
        /// Room name.
        room: String,
        /// Any JSON value.
        data: serde_json::Value,
    },
    /// Create an API key (the reply carries the raw key, once).
    CreateKey {
        /// Label.
        name: String,
        /// Scopes, e.g. "subscribe,publish".
        scopes: String,
        /// Connection cap (0 = unlimited).
        #[serde(default)]
        max_connections: u32,
        /// Limit the key to rooms starting with this prefix.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_prefix: Option<String>,
        /// The key stops connecting at this time, epoch ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Every key (hashes are not returned).
    ListKeys,
    /// Revoke a key; optionally close its live connections.
    RevokeKey {
        /// Public key id.
        key_id: String,
        /// Also close the key's live connections.
        #[serde(default)]
        disconnect: bool,
    },
    /// Delete a key's record for good (the smoke journey's last step; a live connection of
    /// the key stays open until it ends, as after a revoke without `disconnect`).
    DeleteKey {
        /// Public key id.
        key_id: String,
    },
}

/// A key as operators see it: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// Public id.
    pub key_id: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: String,
    /// Connection cap (0 = unlimited).
    pub max_connections: u32,
    /// Creation time, epoch ms.
    pub created_at: u64,
    /// Revocation time, epoch ms.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// The only rooms the key may name start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_prefix: Option<String>,
    /// When the key stops connecting, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        KeyView {
            key_id: r.key_id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.to_string(),
            max_connections: r.max_connections,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            room_prefix: r.room_prefix.clone(),
            expires_at: r.expires_at,
        }
    }
}

/// Everything known about one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetails {
    /// The durable record.
    pub record: ConnectionRecord,
    /// Rooms it is in.
    pub rooms: Vec<String>,
    /// What the gateway / management API knows live (None if it is gone).
    #[serde(default)]
    pub live: Option<LiveInfo>,
}

/// The reply to an [`AdminRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdminReply {
    /// A page of connections, each with its rooms.
    Connections {
        /// The page.
        page: Page<ConnectionDetails>,
    },
    /// One connection.
    Connection {
        /// Its details.
        details: ConnectionDetails,
    },
    /// A kick happened (or the connection was already gone and was pruned).
    Kicked {
        /// Connection id.
        connection_id: String,
        /// Whether it was live.
        was_live: bool,
    },
    /// A page of rooms.
    Rooms {
        /// The page.
        page: Page<RoomInfo>,
    },
    /// One room with its members.
    Room {
        /// Counters.
        info: RoomInfo,
        /// Member connection ids, sorted.
        members: Vec<String>,
    },
    /// A publish happened.
    Published {
        /// Its report.
        report: PublishReport,
    },
    /// A key was created. `key` is the raw secret: print it once, never log it.
    KeyCreated {
        /// The raw key.
        key: String,
        /// Its record (without hash).
        record: KeyView,
    },
    /// Every key.
    Keys {
        /// Keys, oldest first.
        keys: Vec<KeyView>,
    },
    /// A key was revoked.
    KeyRevoked {
        /// The key.
        record: KeyView,
        /// Live connections closed.
        disconnected: usize,
    },
    /// A key's record was deleted.
    KeyDeleted {
        /// The record as it was.
        record: KeyView,
    },
    /// The request failed.
    Error {
        /// Code.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: String,
    },
}

fn not_found(what: &str) -> HandlerError {
    HandlerError::new(ErrorCode::NotFound, format!("{what} not found"))
}

fn page_limit(limit: usize) -> Result<usize, HandlerError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(HandlerError::new(ErrorCode::BadRequest, format!("limit must be 1..={MAX_PAGE}")));
    }
    Ok(limit)
}

/// A new key as [`AdminRequest::CreateKey`] asks for it, its scopes and room prefix
/// checked (`bad_request` naming what is wrong). Every path that creates keys for
/// operators goes through it.
pub fn new_key(
    name: &str,
    scopes: &str,
    limits: auth::KeyLimits,
    max_room_name_len: usize,
) -> Result<auth::NewKey, HandlerError> {
    let scopes = Scopes::parse_list(scopes).map_err(|e| HandlerError::new(ErrorCode::BadRequest, e))?;
    if scopes.as_slice().is_empty() {
        return Err(HandlerError::new(ErrorCode::BadRequest, "a key needs at least one scope (subscribe, publish)"));
    }
    if let Some(prefix) = &limits.room_prefix {
        auth::validate_room_prefix(prefix, max_room_name_len)
            .map_err(|e| HandlerError::new(ErrorCode::BadRequest, e))?;
    }
    Ok(auth::generate(name, scopes, limits, now_ms()))
}

impl Services {
    /// Runs one operator request; every failure becomes [`AdminReply::Error`].
    pub async fn admin(&self, request: AdminRequest) -> AdminReply {
        match self.admin_inner(request).await {
            Ok(reply) => reply,
            Err(e) => AdminReply::Error { code: e.code, message: e.message },
        }
    }

    async fn details(&self, record: ConnectionRecord) -> Result<ConnectionDetails, HandlerError> {
        let rooms = self.rooms.rooms_of(&record.connection_id).await?;
        let live = self.sender.info(&record.connection_id).await.unwrap_or(None);
        Ok(ConnectionDetails { record, rooms, live })
    }

    async fn admin_inner(&self, request: AdminRequest) -> Result<AdminReply, HandlerError> {
        let room_name = |r: &str| {
            RoomName::parse(r, self.limits.max_room_name_len)
                .map_err(|e| HandlerError::new(ErrorCode::InvalidRoom, e.to_string()))
        };
        match request {
            AdminRequest::ListConnections { key_id, room, cursor, limit } => {
                let limit = page_limit(limit)?;
                let page = match (key_id, room) {
                    (_, Some(room)) => {
                        // Room membership is small per page: page over the sorted member ids.
                        let mut ids: Vec<String> =
                            self.rooms.members(&room_name(&room)?).await?.iter().map(|s| s.to_string()).collect();
                        ids.sort();
                        let mut items = Vec::new();
                        let mut next = None;
                        for id in ids.into_iter().filter(|id| cursor.as_deref().is_none_or(|c| id.as_str() > c)) {
                            if items.len() == limit {
                                next = items.last().map(|r: &ConnectionRecord| r.connection_id.clone());
                                break;
                            }
                            if let Some(rec) = self.connections.get(&id).await? {
                                items.push(rec);
                            }
                        }
                        Page { items, next }
                    }
                    (Some(key), None) => self.connections.list_by_key(&key, cursor.as_deref(), limit).await?,
                    (None, None) => self.connections.list(cursor.as_deref(), limit).await?,
                };
                let mut items = Vec::with_capacity(page.items.len());
                for rec in page.items {
                    items.push(self.details(rec).await?);
                }
                Ok(AdminReply::Connections { page: Page { items, next: page.next } })
            }
            AdminRequest::ShowConnection { connection_id } => {
                let rec = self
                    .connections
                    .get(&connection_id)
                    .await?
                    .ok_or_else(|| not_found(&format!("connection {connection_id}")))?;
                Ok(AdminReply::Connection { details: self.details(rec).await? })
            }
            AdminRequest::KickConnection { connection_id } => {
                let was_live = self
                    .sender
                    .disconnect(&connection_id)
                    .await
                    .map_err(|e| HandlerError::new(ErrorCode::Unavailable, e.to_string()))?;
                if !was_live {
                    let report = self.disconnect(&connection_id).await?;
                    if !report.had_record && report.rooms.is_empty() {
                        return Err(not_found(&format!("connection {connection_id}")));
                    }
                }
                Ok(AdminReply::Kicked { connection_id, was_live })
            }
            AdminRequest::ListRooms { prefix, cursor, limit } => {
                let page = self.rooms.list_rooms(&prefix, cursor.as_deref(), page_limit(limit)?).await?;
                Ok(AdminReply::Rooms { page })
            }
            AdminRequest::ShowRoom { room } => {
                let name = room_name(&room)?;
                let info = self.rooms.room_info(&name).await?.ok_or_else(|| not_found(&format!("room {room}")))?;
                let mut members: Vec<String> = self.rooms.members(&name).await?.iter().map(|s| s.to_string()).collect();
                members.sort();
                Ok(AdminReply::Room { info, members })
            }
            AdminRequest::Publish { room, data } => {
                let raw = RawValue::from_string(data.to_string())
                    .map_err(|e| HandlerError::new(ErrorCode::BadRequest, format!("data: {e}")))?;
                Ok(AdminReply::Published { report: self.publish(&room, &raw).await? })
            }
            AdminRequest::CreateKey { name, scopes, max_connections, room_prefix, expires_at } => {
                let limits = auth::KeyLimits { max_connections, room_prefix, expires_at };
                let new = new_key(&name, &scopes, limits, self.limits.max_room_name_len)?;
                self.keys.create(&new.record).await?;
                tracing::info!(key_id = %new.record.key_id, "API key created");
                Ok(AdminReply::KeyCreated { record: KeyView::from(&new.record), key: new.raw })
            }
            AdminRequest::ListKeys => {
                Ok(AdminReply::Keys { keys: self.keys.list().await?.iter().map(KeyView::from).collect() })
            }
            AdminRequest::RevokeKey { key_id, disconnect } => {
                let rec =
                    self.keys.revoke(&key_id, now_ms()).await?.ok_or_else(|| not_found(&format!("key {key_id}")))?;
                tracing::info!(key_id = %key_id, "API key revoked");
                let mut disconnected = 0;
                if disconnect {
                    let mut cursor = None;
                    loop {
                        let page = self.connections.list_by_key(&key_id, cursor.as_deref(), MAX_PAGE).await?;
                        for rec in &page.items {
                            match self.sender.disconnect(&rec.connection_id).await {
                                Ok(true) => disconnected += 1,
                                Ok(false) => {
                                    self.disconnect(&rec.connection_id).await?;
                                }
                                Err(e) => return Err(HandlerError::new(ErrorCode::Unavailable, e.to_string())),
                            }
                        }
                        match page.next {
                            Some(n) => cursor = Some(n),
                            None => break,
                        }
                    }
                }
                Ok(AdminReply::KeyRevoked { record: KeyView::from(&rec), disconnected })
            }
            AdminRequest::DeleteKey { key_id } => {
                let rec = self.keys.delete(&key_id).await?.ok_or_else(|| not_found(&format!("key {key_id}")))?;
                tracing::info!(key_id = %key_id, "API key deleted");
                Ok(AdminReply::KeyDeleted { record: KeyView::from(&rec) })
            }
        }
    }
}
