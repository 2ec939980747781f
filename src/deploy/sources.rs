//! A fingerprint of the handler sources, recorded in `manifest.json` by `wsctl build`, so
//! that `plan` can tell whether `dist/` still matches the code without building anything.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Directories never part of the sources.
const SKIPPED: [&str; 3] = ["target", ".git", "dist"];

/// SHA-256 over the relative path and contents of every file under `workspace/handlers`
/// (build output excluded) plus the workspace's `Cargo.toml` and `Cargo.lock`, in path
/// order; `None` when there are no handler sources under `workspace`.
pub fn handler_sources_hash(workspace: &Path) -> Option<String> {
    let handlers = workspace.join("handlers");
    if !handlers.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    collect(&handlers, &mut files);
    for top in ["Cargo.toml", "Cargo.lock"] {
        let path = workspace.join(top);
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for path in &files {
        let rel = path.strip_prefix(workspace).unwrap_or(path);
        let Ok(bytes) = std::fs::read(path) else { continue };
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Some(hex::encode(hash.finalize()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !SKIPPED.iter().any(|s| name == *s) {
                collect(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_follows_the_sources_and_ignores_build_output() {
        let dir = std::env::temp_dir().join(format!("wsctl-sources-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(handler_sources_hash(&dir), None, "no handlers, no hash");
        std::fs::create_dir_all(dir.join("handlers/src")).expect("mkdir");
        std::fs::create_dir_all(dir.join("handlers/target")).expect("mkdir");
        std::fs::write(dir.join("handlers/src/lib.rs"), "pub fn a() {}").expect("write");
        std::fs::write(dir.join("Cargo.lock"), "v1").expect("write");
        let first = handler_sources_hash(&dir).expect("hash");
        std::fs::write(dir.join("handlers/target/junk"), "x").expect("write");
        assert_eq!(handler_sources_hash(&dir).as_ref(), Some(&first), "build output is ignored");
        std::fs::write(dir.join("handlers/src/lib.rs"), "pub fn b() {}").expect("write");
        let edited = handler_sources_hash(&dir).expect("hash");
        assert_ne!(edited, first, "an edit changes it");
        std::fs::write(dir.join("Cargo.lock"), "v2").expect("write");
        assert_ne!(handler_sources_hash(&dir).expect("hash"), edited, "a dependency bump changes it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
