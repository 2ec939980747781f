//! Content-addressed artifact uploads: a zip goes to `wsctl/artifacts/SHA256.zip` in the
//! bootstrap bucket, and only when no object with that key exists yet.

use super::manifest::Manifest;
use super::stacks::sdk_error;
use crate::contract::{packaged, PROBE};
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use serde::Serialize;
use std::path::Path;

/// What happened to one function's artifact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactReport {
    /// Function name.
    pub function: String,
    /// SHA-256 of the zip.
    pub sha256: String,
    /// S3 key.
    pub key: String,
    /// Uploaded now (false: already in the bucket).
    pub uploaded: bool,
}

/// What the bucket holds under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// No object.
    Missing,
    /// An object whose stored SHA-256 checksum (base64) is this, if S3 has one.
    Present(Option<String>),
}

/// HEAD of an object, with its SHA-256 checksum when S3 stored one.
pub async fn stored(s3: &Client, bucket: &str, key: &str) -> anyhow::Result<Stored> {
    let head = s3.head_object().bucket(bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await;
    match head {
        Ok(out) => Ok(Stored::Present(out.checksum_sha256().map(str::to_owned))),
        Err(err) => {
            let not_found = err.as_service_error().is_some_and(|e| e.is_not_found())
                || err.raw_response().is_some_and(|r| r.status().as_u16() == 404);
            if not_found {
                Ok(Stored::Missing)
            } else {
                Err(sdk_error(err)).with_context(|| format!("checking s3://{bucket}/{key}"))
            }
        }
    }
}

/// Whether an object exists (HEAD).
pub async fn exists(s3: &Client, bucket: &str, key: &str) -> anyhow::Result<bool> {
    Ok(stored(s3, bucket, key).await? != Stored::Missing)
}

/// The base64 SHA-256 S3 and Lambda report (standard alphabet, padded) for a hex digest
/// from the manifest; `None` unless it is 64 hex digits.
pub fn hex_to_base64(hex: &str) -> Option<String> {
    use base64::Engine;
    let bytes = hex::decode(hex).ok().filter(|b| b.len() == 32)?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Checks every artifact of the manifest against the bucket; uploads the missing ones
/// unless `dry_run`.
pub async fn sync(
    s3: &Client,
    bucket: &str,
    manifest_path: &Path,
    manifest: &Manifest,
    dry_run: bool,
) -> anyhow::Result<Vec<ArtifactReport>> {
    let mut reports = Vec::new();
    for f in packaged() {
        let Some(artifact) = manifest.functions.get(f.name) else {
            // The probe's zip is optional (see functions::PROBE); the six are not.
            if f == PROBE {
                continue;
            }
            anyhow::bail!("the manifest has no artifact for `{}`", f.name);
        };
        let key = artifact.s3_key();
        let checksum = hex_to_base64(&artifact.sha256)
            .with_context(|| format!("manifest: `{}` has a malformed sha256", f.name))?;
        // S3 verifies the checksum on upload; after the deploy, wsctl compares the code
        // Lambda actually runs with the manifest (see `engine::verify_deployed_code`).
        let present = stored(s3, bucket, &key).await? != Stored::Missing;
        if !present && !dry_run {
            let path = Manifest::artifact_path(manifest_path, artifact);
            let body = ByteStream::from_path(&path).await.with_context(|| format!("cannot read {}", path.display()))?;
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body)
                .content_type("application/zip")
                .checksum_sha256(&checksum)
                .metadata("wsctl-function", f.name)
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("uploading {} to s3://{bucket}/{key}", path.display()))?;
        }
        reports.push(ArtifactReport {
            function: f.name.to_owned(),
            sha256: artifact.sha256.clone(),
            key,
            uploaded: !present,
        });
    }
    Ok(reports)
}

/// Checks that the bucket still holds every artifact of a recorded manifest (a rollback
/// uploads nothing: its zips are the bucket's); the error names each one that is gone.
pub async fn recorded(s3: &Client, bucket: &str, manifest: &Manifest) -> anyhow::Result<Vec<ArtifactReport>> {
    let mut reports = Vec::new();
    let mut missing = Vec::new();
    for f in packaged() {
        let Some(artifact) = manifest.functions.get(f.name) else { continue };
        let key = artifact.s3_key();
        if !exists(s3, bucket, &key).await? {
            missing.push(format!("{} (s3://{bucket}/{key})", f.name));
        }
        reports.push(ArtifactReport {
            function: f.name.to_owned(),
            sha256: artifact.sha256.clone(),
            key,
            uploaded: false,
        });
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the recorded artifacts are no longer in the bucket: {}; nothing was changed. Deploy that build from \
             its manifest and zips instead (`wsctl deploy --manifest DIR/manifest.json`)",
            missing.join(", ")
        );
    }
    Ok(reports)
}

/// Uploads a rendered template too large to pass inline; returns its S3 URL.
pub async fn upload_template(s3: &Client, bucket: &str, region: &str, body: &str) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let key = format!("wsctl/templates/{}.yaml", hex::encode(Sha256::digest(body.as_bytes())));
    if !exists(s3, bucket, &key).await? {
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .content_type("application/x-yaml")
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("uploading the template to s3://{bucket}/{key}"))?;
    }
    Ok(format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"))
}

/// The report for a bucket that does not exist yet: every artifact would be uploaded.
pub fn sync_report_all_missing(manifest: &Manifest) -> Vec<ArtifactReport> {
    packaged()
        .filter_map(|f| {
            let a = manifest.functions.get(f.name)?;
            Some(ArtifactReport {
                function: f.name.to_owned(),
                sha256: a.sha256.clone(),
                key: a.s3_key(),
                uploaded: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digests_become_s3_checksums() {
        // SHA-256 of the empty string, hex and base64.
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(hex_to_base64(sha).unwrap(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert!(hex_to_base64("abc").is_none());
        assert!(hex_to_base64(&"zz".repeat(32)).is_none(), "not hex");
        assert!(hex_to_base64(&sha[..62]).is_none(), "not 32 bytes");
    }
}
