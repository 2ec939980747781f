//! API keys: generation, hashing, scopes, and the authorizer's decision.
//!
//! A key is 256 random bits, shown to its owner once as `wsk_<base64url>`. Only its
//! SHA-256 (hex) is stored; the record is looked up by that hash and the hash is compared
//! again in constant time. The key id (`key_…`) is public and is what logs, the
//! connections table and operator commands show.

use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Prefix of every raw API key.
pub const KEY_PREFIX: &str = "wsk_";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Subscribe to rooms and receive messages.
    Subscribe,
    /// Publish to rooms.
    Publish,
}

impl Scope {
    /// The scope's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Subscribe => "subscribe",
            Scope::Publish => "publish",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s.trim() {
            "subscribe" => Some(Scope::Subscribe),
            "publish" => Some(Scope::Publish),
            _ => None,
        }
    }
}

/// A set of scopes, rendered as a comma-separated list (the authorizer context format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Builds a set from a list (sorted, deduplicated).
    pub fn new(mut scopes: Vec<Scope>) -> Self {
        scopes.sort();
        scopes.dedup();
        Scopes(scopes)
    }

    /// Parses `"subscribe,publish"`; unknown names are an error naming them.
    pub fn parse_list(s: &str) -> Result<Scopes, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(Scope::parse(part).ok_or_else(|| format!("unknown scope {part:?}; allowed: subscribe, publish"))?);
        }
        Ok(Scopes::new(out))
    }

    /// Whether the set holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The scopes as a slice.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// A newly generated key: the raw secret (show once) and what gets stored.
pub struct NewKey {
    /// The raw key. Never log or store it.
    pub raw: String,
    /// The stored record.
    pub record: KeyRecord,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey").field("raw", &"<redacted>").field("record", &self.record).finish()
    }
}

/// A stored API key: its hash and metadata, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// Hex SHA-256 of the raw key (the table's hash key).
    pub key_hash: String,
    /// Public identifier, e.g. `key_3f9a…`.
    pub key_id: String,
    /// Human label.
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// Live connections the key may hold at once (0 = unlimited).
    pub max_connections: u32,
    /// Creation time, epoch ms.
    pub created_at: u64,
    /// Revocation time, epoch ms, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// The only rooms the key may name: those starting with this prefix (None: any room).
    /// Records written before the field existed read as None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_prefix: Option<String>,
    /// After this time (epoch ms) the key no longer connects, as if revoked (None: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl KeyRecord {
    /// Whether the key is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Whether the key is past its expiry at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// What a new key may do besides its scopes: where and until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Live connections the key may hold at once (0 = unlimited).
    pub max_connections: u32,
    /// See [`KeyRecord::room_prefix`].
    pub room_prefix: Option<String>,
    /// See [`KeyRecord::expires_at`].
    pub expires_at: Option<u64>,
}

/// Checks a room prefix given for a key: non-empty, at most `max_len` characters, and
/// made of the characters room names are (a prefix may end in `:` or mid-segment).
pub fn validate_room_prefix(prefix: &str, max_len: usize) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("a room prefix must not be empty (leave it out for every room)".into());
    }
    // A prefix is a valid room name once a segment is completed after it.
    let probe = format!("{prefix}x");
    crate::room::validate(&probe, max_len.saturating_add(1))
        .map_err(|e| format!("room prefix {prefix:?} cannot begin any room name: {e}"))
}

/// Generates a fresh key with 256 bits from the OS RNG.
pub fn generate(name: &str, scopes: Scopes, limits: KeyLimits, now_ms: u64) -> NewKey {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let raw = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let record = KeyRecord {
        key_hash: hash_key(&raw),
        key_id: format!("key_{}", hex::encode(id)),
        name: name.to_owned(),
        scopes,
        max_connections: limits.max_connections,
        created_at: now_ms,
        revoked_at: None,
        room_prefix: limits.room_prefix,
        expires_at: limits.expires_at,
    };
    NewKey { raw, record }
}

/// Hex SHA-256 of a raw key.
pub fn hash_key(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who a connection is, as the authorizer decided (and API Gateway passes to every route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The key's public id.
    pub key_id: String,
    /// The key's scopes.
    pub scopes: Scopes,
    /// The key's connection cap (0 = unlimited).
    pub max_connections: u32,
    /// The key's room prefix, if it is limited to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_prefix: Option<String>,
}

impl Identity {
    /// Refuses a room outside the key's prefix with `forbidden`, naming the prefix.
    pub fn may_name(&self, room: &str) -> Result<(), crate::error::HandlerError> {
        match &self.room_prefix {
            Some(prefix) if !room.starts_with(prefix.as_str()) => Err(crate::error::HandlerError::new(
                crate::protocol::ErrorCode::Forbidden,
                format!("this API key is limited to rooms starting with {prefix:?}; {room:?} is outside it"),
            )),
            _ => Ok(()),
        }
    }
}

/// Why a connect was refused; maps to 401 (no key) or 403 (bad key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No key in the `apiKey` query parameter or the `x-api-key` header.
    #[error("missing API key: pass it as ?apiKey=… or in the x-api-key header")]
    MissingKey,
    /// The key is unknown (or malformed).
    #[error("invalid API key")]
    UnknownKey,
    /// The key was revoked. Told to the client exactly as an unknown key, so a refusal
    /// never reveals that a key exists or once did (logs keep the difference).
    #[error("invalid API key")]
    Revoked,
    /// The key is past its expiry; told to the client as an unknown key, like [`Denied::Revoked`].
    #[error("invalid API key")]
    Expired,
    /// The key already holds its maximum number of connections.
    #[error("API key is at its limit of {0} connections")]
    ConnectionCap(u32),
}

impl Denied {
    /// HTTP status the gateway answers the upgrade with.
    pub fn status(&self) -> u16 {
        match self {
            Denied::MissingKey => 401,
            _ => 403,
        }
    }
}

/// Picks the API key from a query string value or header value (query first, as
/// browsers cannot set headers on a WebSocket).
pub fn extract_key<'a>(query: Option<&'a str>, header: Option<&'a str>) -> Option<&'a str> {
    // An empty or blank value counts as absent, so `?apiKey=` cannot hide a valid header.
    let present = |v: Option<&'a str>| v.map(str::trim).filter(|k| !k.is_empty());
    present(query).or_else(|| present(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_random_and_hash_only_is_kept() {
        let a = generate("a", Scopes::new(vec![Scope::Subscribe]), KeyLimits::default(), 1);
        let b = generate("b", Scopes::new(vec![Scope::Subscribe]), KeyLimits::default(), 1);
        assert_ne!(a.raw, b.raw);
        assert!(a.raw.starts_with(KEY_PREFIX));
        assert_eq!(a.raw.len(), KEY_PREFIX.len() + 43);
        assert_eq!(a.record.key_hash, hash_key(&a.raw));
        let stored = serde_json::to_string(&a.record).unwrap();
        assert!(!stored.contains(&a.raw[KEY_PREFIX.len()..]));
        assert!(!format!("{a:?}").contains(&a.raw));
    }

    #[test]
    fn scopes_parse_and_render() {
        let s = Scopes::parse_list("publish, subscribe,publish").unwrap();
        assert_eq!(s.to_string(), "subscribe,publish");
        assert!(Scopes::parse_list("admin").unwrap_err().contains("admin"));
    }

    #[test]
    fn a_room_prefix_limits_the_rooms_a_key_names() {
        let identity = |room_prefix: Option<&str>| Identity {
            key_id: "key_1".into(),
            scopes: Scopes::new(vec![Scope::Subscribe]),
            max_connections: 0,
            room_prefix: room_prefix.map(str::to_owned),
        };
        let limited = identity(Some("smoke:"));
        assert!(limited.may_name("smoke:probe").is_ok());
        let err = limited.may_name("smoke-outside:probe").unwrap_err();
        assert_eq!(err.code, crate::protocol::ErrorCode::Forbidden);
        assert!(err.message.contains("\"smoke:\""), "{}", err.message);
        assert!(identity(None).may_name("anything:at-all").is_ok());

        assert!(validate_room_prefix("tenant-a:", 128).is_ok());
        assert!(validate_room_prefix("tenant", 128).is_ok(), "a prefix may end mid-segment");
        assert!(validate_room_prefix("", 128).is_err());
        assert!(validate_room_prefix("a::", 128).is_err());
        assert!(validate_room_prefix("a b", 128).is_err());
    }

    #[test]
    fn records_written_before_prefix_and_expiry_read_as_unlimited() {
        let old =
            r#"{"keyHash":"ab","keyId":"key_1","name":"n","scopes":["subscribe"],"maxConnections":0,"createdAt":1}"#;
        let record: KeyRecord = serde_json::from_str(old).unwrap();
        assert_eq!((record.room_prefix, record.expires_at), (None, None));
        let mut new = generate("p", Scopes::new(vec![Scope::Subscribe]), KeyLimits::default(), 1).record;
        new.expires_at = Some(10);
        assert!(!new.is_expired(9) && new.is_expired(10));
    }

    #[test]
    fn hash_comparison() {
        let h = hash_key("wsk_x");
        assert!(hashes_match(&h, &hash_key("wsk_x")));
        assert!(!hashes_match(&h, &hash_key("wsk_y")));
        assert!(!hashes_match(&h, "short"));
    }
}
