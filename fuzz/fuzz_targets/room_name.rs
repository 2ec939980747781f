//! Fuzzes the room-name grammar (`room::validate`, `RoomName::parse`).
//!
//! The first byte picks the length limit (1..=255, the range a stage allows), the rest is
//! the name. The result must agree with a regex-free reference scan, and an accepted name
//! must contain nothing outside `A-Z a-z 0-9 _ . - :` (no Redis hash-tag braces).

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsctl_handlers::room::{validate, RoomName, RoomNameError};

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn model(name: &str, max: usize) -> Result<(), RoomNameError> {
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    let len = name.chars().count();
    if len > max {
        return Err(RoomNameError::TooLong { len, max });
    }
    let mut segment = 0usize;
    for c in name.chars() {
        match c {
            ':' if segment == 0 => return Err(RoomNameError::EmptySegment),
            ':' => segment = 0,
            c if allowed(c) => segment += 1,
            c => return Err(RoomNameError::BadChar(c)),
        }
    }
    if segment == 0 {
        return Err(RoomNameError::EmptySegment);
    }
    Ok(())
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, rest)) = bytes.split_first() else { return };
    let max = usize::from(first).max(1);
    let name = String::from_utf8_lossy(rest);
    let result = validate(&name, max);
    assert_eq!(result, model(&name, max), "{name:?} (max {max})");
    match RoomName::parse(&name, max) {
        Ok(room) => {
            assert!(result.is_ok());
            assert_eq!(room.as_str(), name);
            assert!(room.as_str().len() <= max, "ASCII-only, so bytes == chars");
            assert!(room.as_str().chars().all(|c| c == ':' || allowed(c)));
        }
        Err(e) => assert_eq!(Err(e), result),
    }
});
