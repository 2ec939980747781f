//! Checks on a built handler binary: an ELF executable for the expected machine that
//! needs no glibc newer than the one `provided.al2023` ships (2.34).

use crate::stage::Arch;

/// Newest glibc symbol version the `provided.al2023` runtime offers.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

/// Why a binary cannot run on Lambda.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file at all.
    #[error("not an ELF executable")]
    NotElf,
    /// Built for another CPU.
    #[error("built for ELF machine {found:#x}, expected {expected} ({expected_machine:#x})")]
    WrongMachine { found: u16, expected: &'static str, expected_machine: u16 },
    /// Links against a glibc newer than the runtime has.
    #[error("needs GLIBC_{0}.{1}, newer than provided.al2023's 2.34 (build with cargo-zigbuild and the `.2.34` target suffix)")]
    GlibcTooNew(u32, u32),
}

/// ELF `e_machine` of an architecture.
pub fn machine_of(arch: Arch) -> u16 {
    match arch {
        Arch::Arm64 => 0xB7,  // EM_AARCH64
        Arch::X86_64 => 0x3E, // EM_X86_64
    }
}

/// Validates the header and the glibc symbol versions; returns the newest glibc version
/// referenced, if any.
pub fn check(bytes: &[u8], arch: Arch) -> Result<Option<(u32, u32)>, ElfError> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(ElfError::NotElf);
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != machine_of(arch) {
        return Err(ElfError::WrongMachine {
            found: machine,
            expected: arch.lambda_name(),
            expected_machine: machine_of(arch),
        });
    }
    let newest = newest_glibc(bytes);
    if let Some(v) = newest {
        if v > MAX_GLIBC {
            return Err(ElfError::GlibcTooNew(v.0, v.1));
        }
    }
    Ok(newest)
}

/// The newest `GLIBC_X.Y` version string in the binary's string tables.
pub fn newest_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    const NEEDLE: &[u8] = b"GLIBC_";
    let mut newest = None;
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], NEEDLE) {
        let start = i + pos + NEEDLE.len();
        let end =
            bytes[start..].iter().position(|&b| !(b.is_ascii_digit() || b == b'.')).map_or(bytes.len(), |p| start + p);
        if let Ok(text) = std::str::from_utf8(&bytes[start..end]) {
            let mut parts = text.split('.');
            if let (Some(Ok(major)), Some(Ok(minor))) =
                (parts.next().map(str::parse::<u32>), parts.next().map(str::parse::<u32>))
            {
                newest = newest.max(Some((major, minor)));
            }
        }
        i = end.max(start);
    }
    newest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(machine: u16) -> Vec<u8> {
        let mut b = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        b.resize(18, 0);
        b.extend_from_slice(&machine.to_le_bytes());
        b
    }

    #[test]
    fn machine_and_glibc_are_checked() {
        let mut ok = header(0xB7);
        ok.extend_from_slice(b"\0GLIBC_2.17\0GLIBC_2.34\0GLIBC_PRIVATE\0");
        assert_eq!(check(&ok, Arch::Arm64), Ok(Some((2, 34))));
        assert!(matches!(check(&ok, Arch::X86_64), Err(ElfError::WrongMachine { .. })));
        let mut new = header(0x3E);
        new.extend_from_slice(b"\0GLIBC_2.39\0");
        assert_eq!(check(&new, Arch::X86_64), Err(ElfError::GlibcTooNew(2, 39)));
        assert_eq!(check(b"#!/bin/sh", Arch::X86_64), Err(ElfError::NotElf));
    }
}
