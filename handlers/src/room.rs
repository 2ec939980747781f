//! Room names and their grammar.
//!
//! A room name is one or more segments separated by `:`; a segment is one or more of
//! `A-Z a-z 0-9 _ . -`. Examples: `tvl:protocol:aave`, `tvl:chain:ethereum`,
//! `price:coingecko:bitcoin`. The length is bounded by the stage's `max_room_name_len`
//! (128 by default). Braces are excluded on purpose: the Redis layout uses `{room}` as a
//! cluster hash tag, so a brace in a name could move its keys to another slot.

use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// The name is empty.
    #[error("room name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("room name is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    /// A segment between two `:` is empty.
    #[error("room name has an empty segment (names look like `tvl:protocol:aave`)")]
    EmptySegment,
    /// A character outside the alphabet.
    #[error("room name contains {0:?}; allowed are A-Z a-z 0-9 _ . - and ':' between segments")]
    BadChar(char),
}

/// A validated room name. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// Validates `name` against the grammar and `max_len`.
    pub fn parse(name: &str, max_len: usize) -> Result<RoomName, RoomNameError> {
        validate(name, max_len)?;
        Ok(RoomName(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `name` against the room grammar without allocating.
pub fn validate(name: &str, max_len: usize) -> Result<(), RoomNameError> {
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    let len = name.chars().count();
    if len > max_len {
        return Err(RoomNameError::TooLong { len, max: max_len });
    }
    for segment in name.split(':') {
        if segment.is_empty() {
            return Err(RoomNameError::EmptySegment);
        }
        if let Some(c) = segment.chars().find(|c| !is_segment_char(*c)) {
            return Err(RoomNameError::BadChar(c));
        }
    }
    Ok(())
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RoomName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_examples() {
        for name in ["tvl:protocol:aave", "tvl:chain:ethereum", "price:coingecko:bitcoin", "a", "A-b_c.d"] {
            assert!(RoomName::parse(name, 128).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate("", 128), Err(RoomNameError::Empty));
        assert_eq!(validate("a::b", 128), Err(RoomNameError::EmptySegment));
        assert_eq!(validate(":a", 128), Err(RoomNameError::EmptySegment));
        assert_eq!(validate("a:{b}", 128), Err(RoomNameError::BadChar('{')));
        assert_eq!(validate("a b", 128), Err(RoomNameError::BadChar(' ')));
        assert_eq!(validate("é", 128), Err(RoomNameError::BadChar('é')));
        assert_eq!(validate(&"a".repeat(129), 128), Err(RoomNameError::TooLong { len: 129, max: 128 }));
        assert!(validate(&"a".repeat(128), 128).is_ok());
    }
}
