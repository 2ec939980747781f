//! Checks on a built handler binary, read with the `object` crate: an ELF executable for
//! the expected machine that needs no glibc newer than the one `provided.al2023` ships
//! (2.34).

use crate::stage::Arch;
use object::elf::FileHeader64;
use object::read::elf::FileHeader;
use object::LittleEndian;

/// Newest glibc symbol version the `provided.al2023` runtime offers.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

/// Why a binary cannot run on Lambda.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not a 64-bit little-endian ELF file.
    #[error("not a 64-bit little-endian ELF executable")]
    NotElf,
    /// An ELF header whose sections cannot be read.
    #[error("not a well-formed ELF executable: {0}")]
    Malformed(String),
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
        Arch::Arm64 => object::elf::EM_AARCH64.0,
        Arch::X86_64 => object::elf::EM_X86_64.0,
    }
}

/// Validates the header and the glibc symbol versions; returns the newest glibc version
/// the binary needs, if any.
pub fn check(bytes: &[u8], arch: Arch) -> Result<Option<(u32, u32)>, ElfError> {
    let header = FileHeader64::<LittleEndian>::parse(bytes).map_err(|_| ElfError::NotElf)?;
    let endian = header.endian().map_err(|_| ElfError::NotElf)?;
    let machine = header.e_machine(endian).0;
    if machine != machine_of(arch) {
        return Err(ElfError::WrongMachine {
            found: machine,
            expected: arch.lambda_name(),
            expected_machine: machine_of(arch),
        });
    }
    let newest = newest_glibc(header, endian, bytes).map_err(|e| ElfError::Malformed(e.to_string()))?;
    if let Some(v) = newest {
        if v > MAX_GLIBC {
            return Err(ElfError::GlibcTooNew(v.0, v.1));
        }
    }
    Ok(newest)
}

/// The newest `GLIBC_X.Y` among the symbol versions the binary needs (its
/// `.gnu.version_r` section, as `objdump -p` lists them); `None` when it needs none.
fn newest_glibc(
    header: &FileHeader64<LittleEndian>,
    endian: LittleEndian,
    bytes: &[u8],
) -> object::read::Result<Option<(u32, u32)>> {
    let sections = header.sections(endian, bytes)?;
    let Some((mut needs, strings_index)) = sections.gnu_verneed(endian, bytes)? else {
        return Ok(None);
    };
    let strings = sections.strings(endian, bytes, strings_index)?;
    let mut newest = None;
    while let Some((_library, mut versions)) = needs.next()? {
        while let Some(version) = versions.next()? {
            newest = newest.max(glibc_version(version.name(endian, strings)?));
        }
    }
    Ok(newest)
}

/// `(2, 34)` for `GLIBC_2.34`; `None` for other names (`GLIBC_PRIVATE`, `GCC_3.0`).
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let mut parts = std::str::from_utf8(name).ok()?.strip_prefix("GLIBC_")?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The architecture this test runs on, and the other one.
    const HOST: (Arch, Arch) =
        if cfg!(target_arch = "aarch64") { (Arch::Arm64, Arch::X86_64) } else { (Arch::X86_64, Arch::Arm64) };

    /// A real ELF executable linked against glibc: this test binary.
    fn this_binary() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    /// The glibc check's verdict without the 2.34 ceiling: the newest version needed.
    fn needs(bytes: &[u8]) -> Option<(u32, u32)> {
        match check(bytes, HOST.0) {
            Ok(v) => v,
            Err(ElfError::GlibcTooNew(a, b)) => Some((a, b)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_real_binary_is_checked_for_machine_and_glibc() {
        let exe = this_binary();
        let newest = needs(&exe).expect("a glibc-linked test binary needs some GLIBC_2.x");
        assert!(newest >= (2, 2), "{newest:?}");
        let wrong = check(&exe, HOST.1).unwrap_err();
        assert_eq!(
            wrong,
            ElfError::WrongMachine {
                found: machine_of(HOST.0),
                expected: HOST.1.lambda_name(),
                expected_machine: machine_of(HOST.1)
            }
        );
    }

    #[test]
    fn only_needed_versions_count_not_strings_elsewhere_in_the_file() {
        let mut exe = this_binary();
        let before = needs(&exe);
        exe.extend_from_slice(b"\0GLIBC_2.99\0");
        assert_eq!(needs(&exe), before);
    }

    #[test]
    fn a_binary_needing_a_newer_glibc_is_refused() {
        let mut exe = this_binary();
        // Rename the base version every symbol of this binary needs (same length, in the
        // dynamic string table) to one newer than provided.al2023 has.
        let (base, newer): (&[u8], &[u8]) = if HOST.0 == Arch::Arm64 {
            (b"GLIBC_2.17\0", b"GLIBC_2.99\0")
        } else {
            (b"GLIBC_2.2.5\0", b"GLIBC_2.99\0\0")
        };
        let at: Vec<usize> = exe.windows(base.len()).enumerate().filter(|(_, w)| *w == base).map(|(i, _)| i).collect();
        assert!(!at.is_empty(), "this binary needs {}", String::from_utf8_lossy(base));
        for i in at {
            exe[i..i + newer.len()].copy_from_slice(newer);
        }
        assert_eq!(check(&exe, HOST.0), Err(ElfError::GlibcTooNew(2, 99)));
    }

    #[test]
    fn other_files_are_refused_with_a_reason() {
        assert_eq!(check(b"#!/bin/sh\necho hi\n", Arch::X86_64), Err(ElfError::NotElf));
        let exe = this_binary();
        let mut elf32 = exe.clone();
        elf32[4] = 1; // ELFCLASS32
        assert_eq!(check(&elf32, HOST.0), Err(ElfError::NotElf));
        let truncated = &exe[..64];
        assert!(matches!(check(truncated, HOST.0), Err(ElfError::Malformed(_))), "{:?}", check(truncated, HOST.0));
    }

    #[test]
    fn version_names_parse() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version(b"GCC_3.0"), None);
    }
}
