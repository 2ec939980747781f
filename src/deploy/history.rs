//! A stage's deploy history: one JSON object per successful deploy in the artifact bucket,
//! `wsctl/history/PREFIX/NNNNNNNN.json`, holding the whole build manifest that was deployed
//! (its zips stay in the same bucket under their content-addressed keys), so `wsctl
//! rollback` can deploy it again without the `dist/` it came from.
//!
//! Entries are numbered from 1 in the order they were recorded and never renumbered: `--to
//! 3` means the same deploy today and next month. Only a deploy whose stacks all settled
//! (after a canary, once CodeDeploy shifted all the traffic) and whose functions run the
//! manifest's code is recorded; a failed or interrupted one leaves no entry, because the
//! history is the list of what can be rolled back to, and CloudFormation's own events keep
//! the failures.

use super::artifacts::hex_to_base64;
use super::manifest::Manifest;
use super::stacks::{self, sdk_error};
use crate::contract::{self, BOOTSTRAP_STACK, FUNCTIONS, LIVE_ALIAS};
use crate::stage::Stage;
use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Format version of an entry written by this wsctl.
pub const ENTRY_FORMAT: u32 = 1;

/// One recorded deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Format version.
    pub format: u32,
    /// Position in the stage's history, from 1.
    pub number: u64,
    /// Stage name.
    pub stage: String,
    /// SHA-256 of the manifest (see [`manifest_hash`]).
    pub manifest_hash: String,
    /// When the deploy finished (UTC, ISO 8601).
    pub deployed_at: String,
    /// `git rev-parse HEAD` of the directory wsctl ran in, `-dirty` with uncommitted changes
    /// to tracked files; absent outside a git checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The caller's ARN (STS GetCallerIdentity, asked by the account check anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// Set when the deploy was `wsctl rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackOf>,
    /// The wsctl that deployed it.
    pub wsctl_version: String,
    /// The manifest deployed; its zips are `Artifact::s3_key` in the same bucket.
    pub manifest: Manifest,
}

/// What a rollback went back to, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOf {
    /// The entry whose manifest was deployed again.
    pub to: u64,
    /// The entry that was live before (`None`: the running code matched no entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

/// Who and what a deploy about to run is, for its entry.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// See [`Entry::commit`].
    pub commit: Option<String>,
    /// See [`Entry::deployed_by`].
    pub deployed_by: Option<String>,
    /// See [`Entry::rollback`].
    pub rollback: Option<RollbackOf>,
}

/// The SHA-256 of a manifest's JSON (its fields in a fixed order, its functions sorted),
/// lower-case hex: the same build gives the same hash wherever it is deployed.
pub fn manifest_hash(manifest: &Manifest) -> String {
    let json = serde_json::to_vec(manifest).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// The prefix of a stage's entries in the artifact bucket (the bucket serves every stage of
/// the account and region; the stack prefix tells them apart).
pub fn prefix(stage: &Stage) -> String {
    format!("wsctl/history/{}/", stage.stack_prefix())
}

fn key(stage: &Stage, number: u64) -> String {
    format!("{}{number:08}.json", prefix(stage))
}

/// The working directory's commit, `-dirty` when tracked files changed; `None` outside a
/// git checkout or without git. Never an error: a deploy does not depend on it.
pub fn current_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--verify", "HEAD"]).filter(|h| !h.is_empty())?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"]);
    Some(if changes.is_some_and(|c| !c.is_empty()) { format!("{head}-dirty") } else { head })
}

/// The artifact bucket of the account and region (the bootstrap stack's), `None` before the
/// first deploy.
pub async fn artifact_bucket(cfn: &aws_sdk_cloudformation::Client) -> anyhow::Result<Option<String>> {
    if stacks::describe_stack(cfn, BOOTSTRAP_STACK).await?.is_none() {
        return Ok(None);
    }
    let resources = stacks::stack_resources(cfn, BOOTSTRAP_STACK).await?;
    Ok(resources.get("ArtifactBucket").and_then(|r| r.physical_id.clone()))
}

/// The entry numbers present, ascending.
async fn numbers(s3: &aws_sdk_s3::Client, bucket: &str, stage: &Stage) -> anyhow::Result<Vec<u64>> {
    let prefix = prefix(stage);
    let pages: Vec<_> = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .into_paginator()
        .send()
        .collect::<Result<_, _>>()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
    let mut numbers: Vec<u64> = pages
        .iter()
        .flat_map(|page| page.contents())
        .filter_map(|o| o.key()?.strip_prefix(&prefix)?.strip_suffix(".json")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Entry> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    let bytes = object.body.collect().await.with_context(|| format!("reading s3://{bucket}/{key}"))?.into_bytes();
    serde_json::from_slice(&bytes).with_context(|| format!("s3://{bucket}/{key} is not a wsctl history entry"))
}

/// Entries read from S3 at once: a stage with hundreds of deploys lists in a few dozen
/// round trips rather than one per entry.
const READS_IN_FLIGHT: usize = 16;

/// Every entry of the stage, oldest first.
pub async fn list(s3: &aws_sdk_s3::Client, bucket: &str, stage: &Stage) -> anyhow::Result<Vec<Entry>> {
    use futures_util::{StreamExt, TryStreamExt};
    let keys: Vec<String> = numbers(s3, bucket, stage).await?.into_iter().map(|n| key(stage, n)).collect();
    futures_util::stream::iter(keys.iter().map(|k| read(s3, bucket, k))).buffered(READS_IN_FLIGHT).try_collect().await
}

/// Records a successful deploy as the next entry, unless nothing changed and the newest
/// entry already has this manifest (a repeated deploy adds no line; the first deploy of a
/// stage deployed before history existed does). Returns the entry written.
pub async fn record(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    stage: &Stage,
    manifest: &Manifest,
    origin: &Origin,
    changed: bool,
) -> anyhow::Result<Option<Entry>> {
    let hash = manifest_hash(manifest);
    let existing = numbers(s3, bucket, stage).await?;
    if let (false, Some(&last)) = (changed, existing.last()) {
        if read(s3, bucket, &key(stage, last)).await?.manifest_hash == hash {
            return Ok(None);
        }
    }
    let mut number = existing.last().map_or(1, |n| n + 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let deployed_at = crate::output::rfc3339(now.as_secs() as i64);
    // Two deploys recording at once (CloudFormation lets only one update a stack, but the
    // bucket is shared): the conditional put keeps each number written once.
    for _ in 0..5 {
        let entry = Entry {
            format: ENTRY_FORMAT,
            number,
            stage: stage.name.clone(),
            manifest_hash: hash.clone(),
            deployed_at: deployed_at.clone(),
            commit: origin.commit.clone(),
            deployed_by: origin.deployed_by.clone(),
            rollback: origin.rollback,
            wsctl_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: manifest.clone(),
        };
        let body = format!("{}\n", serde_json::to_string_pretty(&entry)?);
        let key = key(stage, number);
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Some(entry)),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 412) => number += 1,
            Err(err) => return Err(sdk_error(err)).with_context(|| format!("writing s3://{bucket}/{key}")),
        }
    }
    anyhow::bail!(
        "could not record the deploy in s3://{bucket}/{}: other deploys kept taking the next number",
        prefix(stage)
    )
}

/// The code each of the six functions runs for its callers (Lambda's base64 SHA-256), by
/// function name: that of the version its `live` alias points at — every integration,
/// permission and invoker goes through the alias, so during a canary bake this is the
/// version that keeps most of the traffic, and after CodeDeploy rolled a release back it
/// is the old one, although `$LATEST` already holds the new code. Where the alias does not
/// exist (an emulator that skips `AWS::Lambda::Alias`), `$LATEST`'s. Functions that do not
/// exist are left out.
pub async fn running_code(lambda: &aws_sdk_lambda::Client, stage: &Stage) -> BTreeMap<String, String> {
    let app = contract::app_stack(stage);
    let mut running = BTreeMap::new();
    for f in FUNCTIONS {
        let name = format!("{app}-{}", f.name);
        let config = match lambda.get_function_configuration().function_name(&name).qualifier(LIVE_ALIAS).send().await {
            Ok(config) => Some(config),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                lambda.get_function_configuration().function_name(&name).send().await.ok()
            }
            Err(_) => None,
        };
        if let Some(sha) = config.and_then(|c| c.code_sha256().map(str::to_owned)) {
            running.insert(f.name.to_owned(), sha);
        }
    }
    running
}

/// The newest entry whose artifacts the six functions run now (`None`: no stage, or code no
/// entry has).
pub fn live(entries: &[Entry], running: &BTreeMap<String, String>) -> Option<u64> {
    let runs = |e: &Entry| {
        FUNCTIONS.iter().all(|f| {
            let recorded = e.manifest.functions.get(f.name).and_then(|a| hex_to_base64(&a.sha256));
            recorded.is_some() && recorded.as_ref() == running.get(f.name)
        })
    };
    entries.iter().rev().find(|e| runs(e)).map(|e| e.number)
}

/// Which entry `wsctl rollback` deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<'a> {
    /// The newest entry before the live one with other artifacts.
    Previous,
    /// `--to N`.
    Number(u64),
    /// `--manifest HASH`: a hash or a unique prefix of one.
    Hash(&'a str),
}

/// Chooses the entry to roll back to; the error says what exists instead.
pub fn choose<'e>(entries: &'e [Entry], live: Option<u64>, pick: Pick<'_>, stage: &str) -> Result<&'e Entry, String> {
    let (first, last) = match (entries.first(), entries.last()) {
        (Some(f), Some(l)) => (f.number, l.number),
        _ => return Err(format!("stage '{stage}' has no deploy history: nothing to roll back to")),
    };
    let see = format!("`wsctl history --stage {stage}` lists them");
    match pick {
        Pick::Number(n) => entries.iter().find(|e| e.number == n).ok_or_else(|| {
            format!("stage '{stage}' has history entries {first} to {last}; there is no entry {n} ({see})")
        }),
        Pick::Hash(prefix) => {
            let prefix = prefix.to_ascii_lowercase();
            if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("--manifest takes a manifest hash (hex) or a prefix of one, not {prefix:?}"));
            }
            let matching: Vec<&Entry> = entries.iter().filter(|e| e.manifest_hash.starts_with(&prefix)).collect();
            let mut hashes: Vec<&str> = matching.iter().map(|e| e.manifest_hash.as_str()).collect();
            hashes.sort_unstable();
            hashes.dedup();
            match hashes.len() {
                0 => Err(format!(
                    "no history entry of stage '{stage}' has a manifest hash starting with {prefix} ({see})"
                )),
                // The same manifest deployed more than once: the newest entry of it.
                1 => Ok(matching[matching.len() - 1]),
                _ => Err(format!(
                    "manifest hash prefix {prefix} is ambiguous in stage '{stage}': {}; give more digits",
                    hashes.iter().map(|h| short(h)).collect::<Vec<_>>().join(", ")
                )),
            }
        }
        Pick::Previous => {
            let Some(live) = live.and_then(|n| entries.iter().find(|e| e.number == n)) else {
                return Err(format!(
                    "the code stage '{stage}' runs now matches no history entry, so there is no \"previous\" one; \
                     pick one with --to N ({see})"
                ));
            };
            entries.iter().rev().find(|e| e.number < live.number && e.manifest_hash != live.manifest_hash).ok_or_else(
                || {
                    format!(
                        "entry {} is live and no earlier entry has other artifacts: nothing to roll back to",
                        live.number
                    )
                },
            )
        }
    }
}

/// `wsctl history` in text: newest first, the live entry marked.
pub fn print_text(stage: &str, place: &str, entries: &[Entry], live: Option<u64>) {
    println!("stage {stage}: {} deploy(s) recorded in {place}, newest first", entries.len());
    println!("    {:>4}  {:<20}  {:<12}  {:<18}  by", "#", "deployed (UTC)", "manifest", "commit");
    for e in entries.iter().rev() {
        let mark = if live == Some(e.number) { "live" } else { "" };
        let commit = e.commit.as_deref().map_or_else(
            || "-".to_owned(),
            |c| match c.strip_suffix("-dirty") {
                Some(head) => format!("{}-dirty", short(head)),
                None => short(c).to_owned(),
            },
        );
        let rollback = match e.rollback {
            Some(RollbackOf { to, from: Some(from) }) => format!("  rollback to {to} (from {from})"),
            Some(RollbackOf { to, from: None }) => format!("  rollback to {to}"),
            None => String::new(),
        };
        println!(
            "{mark:<4}{:>4}  {:<20}  {:<12}  {commit:<18}  {}{rollback}",
            e.number,
            e.deployed_at,
            short(&e.manifest_hash),
            e.deployed_by.as_deref().unwrap_or("-")
        );
    }
    if live.is_none() {
        println!("(the code the functions run now matches none of these entries)");
    }
}

/// The first 12 digits of a hash, as `history` shows it.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::manifest::{Artifact, MANIFEST_VERSION};

    fn manifest(build: &str) -> Manifest {
        let functions = FUNCTIONS
            .iter()
            .map(|f| {
                let sha = hex::encode(Sha256::digest(format!("{} {build}", f.name)));
                (f.name.to_owned(), Artifact { file: format!("{}.zip", f.name), sha256: sha, size: 1 })
            })
            .collect();
        Manifest {
            version: MANIFEST_VERSION,
            architecture: "arm64".into(),
            target: "aarch64-unknown-linux-gnu.2.34".into(),
            functions,
            source_hash: None,
        }
    }

    fn entry(number: u64, build: &str) -> Entry {
        let manifest = manifest(build);
        Entry {
            format: ENTRY_FORMAT,
            number,
            stage: "dev".into(),
            manifest_hash: manifest_hash(&manifest),
            deployed_at: "2026-01-01T00:00:00Z".into(),
            commit: None,
            deployed_by: None,
            rollback: None,
            wsctl_version: "0".into(),
            manifest,
        }
    }

    fn running(build: &str) -> BTreeMap<String, String> {
        manifest(build).functions.iter().map(|(name, a)| (name.clone(), hex_to_base64(&a.sha256).unwrap())).collect()
    }

    #[test]
    fn the_hash_follows_the_manifest() {
        assert_eq!(manifest_hash(&manifest("a")), manifest_hash(&manifest("a")));
        assert_ne!(manifest_hash(&manifest("a")), manifest_hash(&manifest("b")));
        assert_eq!(manifest_hash(&manifest("a")).len(), 64);
    }

    #[test]
    fn live_is_the_newest_entry_whose_code_runs() {
        let entries = [entry(1, "a"), entry(2, "b"), entry(3, "a")];
        assert_eq!(live(&entries, &running("a")), Some(3));
        assert_eq!(live(&entries, &running("b")), Some(2));
        assert_eq!(live(&entries, &running("c")), None);
        let mut partly = running("b");
        partly.insert("connect".into(), running("a")["connect"].clone());
        assert_eq!(live(&entries, &partly), None, "one function on other code");
        assert_eq!(live(&entries, &BTreeMap::new()), None);
    }

    #[test]
    fn previous_skips_entries_with_the_live_artifacts() {
        // 1: a, 2: b, 3: b again (a stage-file change), 4: c.
        let entries = [entry(1, "a"), entry(2, "b"), entry(3, "b"), entry(4, "c")];
        assert_eq!(choose(&entries, Some(4), Pick::Previous, "dev").unwrap().number, 3);
        assert_eq!(choose(&entries, Some(3), Pick::Previous, "dev").unwrap().number, 1);
        let none = choose(&entries, Some(1), Pick::Previous, "dev").unwrap_err();
        assert!(none.contains("entry 1 is live") && none.contains("nothing to roll back"), "{none}");
        let unknown = choose(&entries, None, Pick::Previous, "dev").unwrap_err();
        assert!(unknown.contains("matches no history entry") && unknown.contains("--to N"), "{unknown}");
    }

    #[test]
    fn to_and_manifest_pick_or_say_what_exists() {
        let entries = [entry(1, "a"), entry(2, "b"), entry(3, "a")];
        assert_eq!(choose(&entries, Some(2), Pick::Number(1), "dev").unwrap().number, 1);
        let out = choose(&entries, Some(2), Pick::Number(9), "dev").unwrap_err();
        assert!(out.contains("entries 1 to 3") && out.contains("no entry 9"), "{out}");
        let a = &entries[0].manifest_hash;
        assert_eq!(choose(&entries, None, Pick::Hash(&a[..8]), "dev").unwrap().number, 3, "newest entry of it");
        assert_eq!(choose(&entries, None, Pick::Hash(&a.to_uppercase()), "dev").unwrap().number, 3);
        let missing = choose(&entries, None, Pick::Hash("0000000000000000"), "dev").unwrap_err();
        assert!(missing.contains("starting with 0000000000000000"), "{missing}");
        assert!(choose(&entries, None, Pick::Hash("xyz"), "dev").unwrap_err().contains("hex"));
        assert!(choose(&entries, None, Pick::Hash(""), "dev").is_err());
        // Every hash starts with one of 16 digits: a one-digit prefix of both is ambiguous
        // exactly when they share their first digit.
        let b = &entries[1].manifest_hash;
        let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
        let ambiguous = choose(&entries, None, Pick::Hash(&a[..common]), "dev");
        if common > 0 {
            assert!(ambiguous.unwrap_err().contains("ambiguous"));
        }
        assert!(choose(&[], None, Pick::Previous, "dev").unwrap_err().contains("no deploy history"));
    }

    #[test]
    fn an_entry_round_trips_and_keys_sort_by_number() {
        let e = entry(7, "a");
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"manifestHash\"") && json.contains("\"deployedAt\""), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        let stage = Stage::parse(Path::new("stages/dev.yaml"), "dev", "limits: {}\n").unwrap();
        assert_eq!(key(&stage, 7), "wsctl/history/wsctl-dev/00000007.json");
        assert!(key(&stage, 9) < key(&stage, 10));
    }

    #[test]
    fn the_commit_is_head_and_dirty_with_changed_files() {
        let dir = std::env::temp_dir().join(format!("wsctl-history-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(current_commit(&dir), None, "not a repository");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&dir)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        assert_eq!(current_commit(&dir), None, "no commit yet");
        std::fs::write(dir.join("a"), "1").unwrap();
        git(&["add", "a"]);
        git(&["commit", "-qm", "one"]);
        let head = current_commit(&dir).unwrap();
        assert_eq!(head.len(), 40, "{head}");
        std::fs::write(dir.join("untracked"), "x").unwrap();
        assert_eq!(current_commit(&dir).unwrap(), head, "untracked files do not count");
        std::fs::write(dir.join("a"), "2").unwrap();
        assert_eq!(current_commit(&dir).unwrap(), format!("{head}-dirty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
