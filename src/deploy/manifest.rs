//! The build manifest: which zip holds which function, with each zip's SHA-256.
//!
//! `wsctl build` writes it beside the zips; `wsctl deploy --manifest FILE` deploys exactly
//! those bytes, so CI promotes the same artifacts dev → staging → prod.

use crate::contract::{packaged, PROBE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Manifest format version written by this wsctl.
pub const MANIFEST_VERSION: u32 = 1;

/// One function's artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Zip file name, relative to the manifest's directory.
    pub file: String,
    /// Lower-case hex SHA-256 of the zip.
    pub sha256: String,
    /// Zip size in bytes.
    pub size: u64,
}

impl Artifact {
    /// Content-addressed key in the artifact bucket.
    pub fn s3_key(&self) -> String {
        format!("wsctl/artifacts/{}.zip", self.sha256)
    }
}

/// The manifest file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Lambda architecture the binaries were built for (`arm64` / `x86_64`).
    pub architecture: String,
    /// Rust target triple used.
    pub target: String,
    /// Function name → artifact.
    pub functions: BTreeMap<String, Artifact>,
    /// Fingerprint of the handler sources built (see `sources.rs`); absent in manifests
    /// written by hand or by an older wsctl, which `plan` then treats as out of date.
    #[serde(default)]
    pub source_hash: Option<String>,
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source} (run `wsctl build` to create it)")]
    Io { path: PathBuf, source: std::io::Error },
    /// The JSON is malformed.
    #[error("manifest {path} is not valid: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    /// The manifest is incomplete or inconsistent with its zips.
    #[error("manifest {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Loads a manifest and checks that every function is present and every zip on disk
    /// still has the recorded hash.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Io { path: path.to_owned(), source })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|source| ManifestError::Json { path: path.to_owned(), source })?;
        let invalid = |message: String| ManifestError::Invalid { path: path.to_owned(), message };
        if manifest.version != MANIFEST_VERSION {
            return Err(invalid(format!(
                "version {} is not supported (this wsctl writes {MANIFEST_VERSION}); rebuild with `wsctl build`",
                manifest.version
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        // The probe is optional (manifests built before it existed deploy every stage that
        // does not set `probe:`); when present it is checked like the rest.
        for f in packaged() {
            let Some(artifact) = manifest.functions.get(f.name) else {
                if f == PROBE {
                    continue;
                }
                return Err(invalid(format!("no artifact for function `{}`", f.name)));
            };
            let bytes = std::fs::read(dir.join(&artifact.file))
                .map_err(|e| invalid(format!("cannot read {}: {e}", artifact.file)))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != artifact.sha256 {
                return Err(invalid(format!(
                    "{} has SHA-256 {actual}, the manifest says {}; rebuild with `wsctl build`",
                    artifact.file, artifact.sha256
                )));
            }
        }
        Ok(manifest)
    }

    /// Writes the manifest as pretty JSON.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }

    /// Directory the zips live in (the manifest's).
    pub fn artifact_path(manifest_path: &Path, artifact: &Artifact) -> PathBuf {
        manifest_path.parent().unwrap_or(Path::new(".")).join(&artifact.file)
    }
}
