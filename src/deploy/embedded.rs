//! The handler sources shipped inside wsctl (see `build.rs`), extracted on first use into
//! `$XDG_CACHE_HOME/wsctl/handlers-<hash>` (or `~/.cache/…`), where `wsctl build` compiles
//! them; the cargo target directory there is kept, so later builds are incremental.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded_handlers.rs"));

/// Fingerprint of the embedded files (names the cache directory).
fn fingerprint() -> String {
    let mut hash = Sha256::new();
    for (path, bytes) in HANDLER_FILES {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hex::encode(hash.finalize())[..16].to_owned()
}

/// The cache root: `$XDG_CACHE_HOME/wsctl`, else `$HOME/.cache/wsctl`, else the temp dir.
fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wsctl")
}

/// Writes every embedded file under `dir`.
pub fn extract_to(dir: &Path) -> Result<()> {
    if HANDLER_FILES.is_empty() {
        bail!("this wsctl was built without the handler sources; build from a wsctl checkout, or pass --manifest");
    }
    for (rel, bytes) in HANDLER_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The extracted workspace, created on first use (extracted beside it, then renamed, so a
/// half-written copy is never used).
pub fn workspace() -> Result<PathBuf> {
    let root = cache_root();
    let dir = root.join(format!("handlers-{}", fingerprint()));
    if dir.join("Cargo.toml").is_file() {
        return Ok(dir);
    }
    let staging = root.join(format!(".handlers-{}-{}", fingerprint(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    extract_to(&staging)?;
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        // Another wsctl extracted the same files first.
        Err(_) if dir.join("Cargo.toml").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => Err(e).with_context(|| format!("cannot move the handler sources into {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_workspace_is_a_complete_cargo_workspace() {
        let names: Vec<&str> = HANDLER_FILES.iter().map(|(p, _)| *p).collect();
        for needed in ["Cargo.toml", "Cargo.lock", "handlers/Cargo.toml", "handlers/src/lib.rs"] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        for f in crate::contract::FUNCTIONS {
            let bin = format!("handlers/src/bin/{}.rs", f.name);
            assert!(names.contains(&bin.as_str()), "{bin} missing");
        }
        let dir = std::env::temp_dir().join(format!("wsctl-embedded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        extract_to(&dir).expect("extract");
        let text = |p: &str| std::fs::read_to_string(dir.join(p)).expect(p);
        assert!(!text("handlers/Cargo.toml").contains("wsctl-testkit"), "no path to the test harness");
        assert!(text("Cargo.toml").contains("[profile.lambda]"), "the lambda profile comes along");
        // cargo itself accepts it: the workspace resolves from the shipped Cargo.lock
        // without the network, and has the seven binaries.
        let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--offline", "--format-version", "1", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .output()
            .expect("run cargo metadata");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
        let handlers = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "wsctl-handlers")
            .expect("wsctl-handlers");
        let bins: Vec<&str> = handlers["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["kind"][0] == "bin")
            .filter_map(|t| t["name"].as_str())
            .collect();
        // The six functions and the opt-in probe.
        assert_eq!(bins.len(), 7, "{bins:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
