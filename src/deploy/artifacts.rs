//! Content-addressed artifact uploads: a zip goes to `wsctl/artifacts/SHA256.zip` in the
//! bootstrap bucket, and only when no object with that key exists yet.

use super::functions::FUNCTIONS;
use super::manifest::Manifest;
use super::stacks::sdk_error;
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
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

/// Whether an object exists (HEAD).
pub async fn exists(s3: &Client, bucket: &str, key: &str) -> anyhow::Result<bool> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(err) => {
            let not_found = err.as_service_error().is_some_and(|e| e.is_not_found())
                || err.raw_response().is_some_and(|r| r.status().as_u16() == 404);
            if not_found {
                Ok(false)
            } else {
                Err(sdk_error(err)).with_context(|| format!("checking s3://{bucket}/{key}"))
            }
        }
    }
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
    for f in FUNCTIONS {
        let artifact =
            manifest.functions.get(f.name).with_context(|| format!("the manifest has no artifact for `{}`", f.name))?;
        let key = artifact.s3_key();
        let present = exists(s3, bucket, &key).await?;
        if !present && !dry_run {
            let path = Manifest::artifact_path(manifest_path, artifact);
            let body = ByteStream::from_path(&path).await.with_context(|| format!("cannot read {}", path.display()))?;
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body)
                .content_type("application/zip")
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

/// Uploads a rendered template too large to pass inline; returns its S3 URL.
pub async fn upload_template(s3: &Client, bucket: &str, region: &str, body: &str) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let key = format!("wsctl/templates/{}.yaml", super::cfn_yaml::hex(&Sha256::digest(body.as_bytes())));
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
    FUNCTIONS
        .iter()
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
