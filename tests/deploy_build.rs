//! `wsctl build`: the seven handler zips (six functions and the opt-in probe) for provided.al2023 are byte-identical across two
//! builds of the same source, each holds one executable `bootstrap` that is an ELF for the
//! chosen architecture and needs no glibc newer than 2.34, and the manifest records their
//! SHA-256.
//!
//! Needs cargo-zigbuild, zig and the Rust target (CI: `pip install cargo-zigbuild ziglang`
//! and `rustup target add aarch64-unknown-linux-gnu`). Without them the test checks that
//! `wsctl build` fails with the install command, and says loudly that it skipped the build.

use flate2::read::DeflateDecoder;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use wsctl_testkit::TempDir;

const FUNCTIONS: [&str; 7] = ["authorizer", "connect", "disconnect", "message", "publish", "admin", "probe"];

fn wsctl_build(out: &Path, arch: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsctl"))
        .args(["build", "--arch", arch, "--output", "json", "--out"])
        .arg(out)
        .arg("--workspace")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run wsctl build")
}

fn toolchain_present(target: &str) -> bool {
    let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).output();
    ok(Command::new("cargo-zigbuild").arg("--version"))
        && (ok(Command::new("zig").arg("version")) || ok(Command::new("python3").args(["-m", "ziglang", "version"])))
        && targets.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == target))
}

/// The single entry of a zip written by `wsctl build`: (name, unix mode, inflated data).
fn only_entry(zip: &[u8]) -> (String, u32, Vec<u8>) {
    assert_eq!(&zip[..4], b"PK\x03\x04", "local file header");
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]);
    assert_eq!(u16_at(8), 8, "deflate");
    let csize = u32_at(18) as usize;
    let name_len = u16_at(26);
    let extra = u16_at(28);
    let name = String::from_utf8(zip[30..30 + name_len].to_vec()).unwrap();
    let start = 30 + name_len + extra;
    let mut data = Vec::new();
    DeflateDecoder::new(&zip[start..start + csize]).read_to_end(&mut data).unwrap();
    assert_eq!(crc32fast::hash(&data), u32_at(14), "crc");
    // Central directory record follows the data; external attributes hold the Unix mode.
    let cd = start + csize;
    assert_eq!(&zip[cd..cd + 4], b"PK\x01\x02", "one entry, then the central directory");
    let mode = u32_at(cd + 38) >> 16;
    (name, mode, data)
}

fn newest_glibc(elf: &[u8]) -> Option<(u32, u32)> {
    let text = String::from_utf8_lossy(elf);
    text.match_indices("GLIBC_2.")
        .filter_map(|(i, _)| {
            let rest: String = text[i + 8..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let minor: u32 = rest.split('.').next()?.parse().ok()?;
            Some((2, minor))
        })
        .max()
}

#[test]
fn build_twice_gives_identical_zips_of_al2023_binaries() {
    let (arch, target, machine) = ("arm64", "aarch64-unknown-linux-gnu", 0xB7u16);
    let dir = TempDir::new("wsctl-build").unwrap();
    if !toolchain_present(target) {
        let out = wsctl_build(&dir.join("a"), arch);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pip install") || err.contains("rustup target add"), "names the fix: {err}");
        eprintln!(
            "\n!!!!! SKIPPED the reproducible-build check: cargo-zigbuild, zig or the {target} target is missing.\n\
             !!!!! Install with: pip install cargo-zigbuild ziglang && rustup target add {target}\n"
        );
        return;
    }

    let a = wsctl_build(&dir.join("a"), arch);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = wsctl_build(&dir.join("b"), arch);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let report: Value = serde_json::from_slice(&a.stdout).expect("one JSON document");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("a/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["architecture"], arch);
    assert_eq!(report["manifest"], manifest);

    for f in FUNCTIONS {
        let za = std::fs::read(dir.join(format!("a/{f}.zip"))).unwrap();
        let zb = std::fs::read(dir.join(format!("b/{f}.zip"))).unwrap();
        assert!(za == zb, "{f}.zip differs between two builds of the same source");
        use sha2::{Digest, Sha256};
        let sha: String = Sha256::digest(&za).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(manifest["functions"][f]["sha256"], sha.as_str(), "{f}: manifest hash");

        let (name, mode, elf) = only_entry(&za);
        assert_eq!(name, "bootstrap");
        assert_eq!(mode & 0o777, 0o755, "{f}: bootstrap is executable");
        assert_eq!(&elf[..4], b"\x7fELF", "{f}: ELF");
        assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), machine, "{f}: built for {arch}");
        let glibc = newest_glibc(&elf);
        assert!(glibc.is_none_or(|v| v <= (2, 34)), "{f}: needs glibc {glibc:?} > 2.34");
    }
}
