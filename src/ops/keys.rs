//! `wsctl keys create|list|revoke|delete`. Only a key's SHA-256 is ever stored; the raw key is
//! printed once by `create` and never logged. Each verb is one admin request to the
//! stage ([`Target::call`]): deployed stages serve it on their API-keys table directly;
//! `--stage local` asks the gateway (which keeps key hashes in its state dir).

use super::table::{terminal_width, utc, Table};
use super::target::{unexpected, with_target, Target, TargetArgs};
use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use wsctl_handlers::admin::{AdminReply, AdminRequest, KeyView};
use wsctl_handlers::auth::Scopes;
use wsctl_handlers::store::now_ms;

/// `wsctl keys …`
#[derive(Debug)]
pub enum KeysCommand {
    /// Create an API key; the key is printed once (only its hash is stored).
    Create(CreateArgs),
    /// List keys (ids, names, scopes, caps; never the keys).
    List(ListArgs),
    /// Revoke a key: it can no longer connect (`--disconnect` also closes its live connections).
    Revoke(RevokeArgs),
    /// Delete a key's record: it can no longer connect, and it leaves the list.
    Delete(DeleteArgs),
}

/// `wsctl keys create`
#[derive(Debug)]
pub struct CreateArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Label, e.g. the customer or service using the key.
    pub name: String,
    /// Comma-separated scopes: subscribe, publish.
    pub scopes: String,
    /// Live connections the key may hold at once (0 = unlimited).
    pub max_connections: u32,
    /// Limit the key to rooms starting with this.
    pub room_prefix: Option<String>,
    /// The key stops working this long after its creation (`None`: never).
    pub expires_in: Option<Duration>,
}

/// `wsctl keys delete`
#[derive(Debug)]
pub struct DeleteArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Key id (key_…).
    pub id: String,
}

/// Longest `--expires-in`: ten years (a key meant to live longer should not expire).
const MAX_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);

/// Parses a key lifetime such as `15m`, `12h`, `30d` or `3600s` (one number, one unit).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let not_a_lifetime =
        || format!("'{text}' is not a lifetime: write a number and a unit (s, m, h or d), e.g. 30d or 12h");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(not_a_lifetime()),
    };
    let n: u64 = number.parse().map_err(|_| not_a_lifetime())?;
    let d = Duration::from_secs(n.saturating_mul(unit_secs));
    if d < Duration::from_secs(60) {
        return Err(format!("'{text}' is shorter than a minute: a key needs time to be handed over"));
    }
    if d > MAX_LIFETIME {
        return Err(format!("'{text}' is longer than ten years: leave --expires-in out for a key that never expires"));
    }
    Ok(d)
}

/// `wsctl keys list`
#[derive(Debug)]
pub struct ListArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Hide revoked keys.
    pub active: bool,
}

/// `wsctl keys revoke`
#[derive(Debug)]
pub struct RevokeArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Key id (key_…).
    pub id: String,
    /// Also close the key's live connections now.
    pub disconnect: bool,
}

/// Runs `wsctl keys …`.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, command: KeysCommand) -> Result<Outcome> {
    match command {
        KeysCommand::Create(args) => create(stages, aws, ui, args).await,
        KeysCommand::List(args) => list(stages, aws, ui, args).await,
        KeysCommand::Revoke(args) => revoke(stages, aws, ui, args).await,
        KeysCommand::Delete(args) => delete(stages, aws, ui, args).await,
    }
}

/// What `keys create` prints. `key` is the secret: printed once, never logged.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    stage: String,
    key: String,
    #[serde(flatten, serialize_with = "key_json")]
    record: KeyView,
}

/// A key in JSON output: the view with its scopes as an array (docs/cli.md: lists are
/// arrays); the admin wire format keeps the comma string.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyJson<'a> {
    key_id: &'a str,
    name: &'a str,
    scopes: Vec<&'a str>,
    max_connections: u32,
    created_at: u64,
    revoked_at: Option<u64>,
    room_prefix: Option<&'a str>,
    expires_at: Option<u64>,
}

impl<'a> From<&'a KeyView> for KeyJson<'a> {
    fn from(k: &'a KeyView) -> Self {
        KeyJson {
            key_id: &k.key_id,
            name: &k.name,
            scopes: k.scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
            max_connections: k.max_connections,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            room_prefix: k.room_prefix.as_deref(),
            expires_at: k.expires_at,
        }
    }
}

fn key_json<S: serde::Serializer>(k: &KeyView, s: S) -> Result<S::Ok, S::Error> {
    KeyJson::from(k).serialize(s)
}

async fn create(stages: &Path, aws: &AwsTarget, ui: &Ui, args: CreateArgs) -> Result<Outcome> {
    let scopes = Scopes::parse_list(&args.scopes).map_err(|e| anyhow!("--scopes: {e}"))?;
    if scopes.as_slice().is_empty() {
        bail!("--scopes needs at least one of: subscribe, publish");
    }
    if args.name.trim().is_empty() {
        bail!("--name must not be empty: label the key with who uses it");
    }
    let target = Target::resolve(stages, aws, &args.target).await?;
    let written_to = target.guard_write().await?;
    let request = AdminRequest::CreateKey {
        name: args.name.clone(),
        scopes: scopes.to_string(),
        max_connections: args.max_connections,
        room_prefix: args.room_prefix.clone(),
        expires_at: args.expires_in.map(|d| now_ms().saturating_add(d.as_millis() as u64)),
    };
    let (key, record) = match target.call(&request).await?.reply {
        AdminReply::KeyCreated { key, record } => (key, record),
        other => return Err(unexpected(&other)),
    };
    tracing::debug!(stage = target.stage_name(), key_id = %record.key_id, "API key created");
    let created = Created { stage: target.stage_name().to_owned(), key, record };
    ui.emit(&with_target(&created, &written_to)?, || {
        let r = &created.record;
        println!(
            "created {} ({:?}) on stage {}: scopes {}, max connections {}, rooms {}, {}",
            r.key_id,
            r.name,
            created.stage,
            r.scopes,
            cap(r.max_connections),
            rooms(r),
            r.expires_at.map_or_else(|| "never expires".into(), |at| format!("expires {}", utc(at)))
        );
        println!("API key (shown once; store it now, it cannot be shown again):");
        println!("{}", created.key);
        Ok(())
    })?;
    Ok(Outcome::Success)
}

/// The rooms a key may name, as text: `PREFIX*` or `any`.
fn rooms(k: &KeyView) -> String {
    k.room_prefix.as_ref().map_or_else(|| "any".into(), |p| format!("{p}*"))
}

fn cap(max: u32) -> String {
    if max == 0 {
        "unlimited".into()
    } else {
        max.to_string()
    }
}

async fn list(stages: &Path, aws: &AwsTarget, ui: &Ui, args: ListArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let mut keys = match target.call(&AdminRequest::ListKeys).await?.reply {
        AdminReply::Keys { keys } => keys,
        other => return Err(unexpected(&other)),
    };
    if args.active {
        keys.retain(|k| k.revoked_at.is_none());
    }
    keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    ui.emit(
        &serde_json::json!({
            "stage": target.stage_name(),
            "total": keys.len(),
            "keys": keys.iter().map(KeyJson::from).collect::<Vec<_>>(),
        }),
        || {
            let mut table = Table::new(
                &["KEY ID", "NAME", "SCOPES", "ROOMS", "MAX CONN", "CREATED", "EXPIRES", "REVOKED"],
                &["NAME", "ROOMS"],
            );
            for k in &keys {
                table.row(vec![
                    k.key_id.clone(),
                    k.name.clone(),
                    k.scopes.clone(),
                    rooms(k),
                    cap(k.max_connections),
                    utc(k.created_at),
                    k.expires_at.map_or_else(|| "-".into(), utc),
                    k.revoked_at.map_or_else(|| "-".into(), utc),
                ]);
            }
            if !table.is_empty() {
                print!("{}", table.render(terminal_width()));
            }
            println!("{} key(s) on stage {}", keys.len(), target.stage_name());
            Ok(())
        },
    )?;
    Ok(Outcome::Success)
}

/// What `keys revoke` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Revoked {
    stage: String,
    #[serde(flatten, serialize_with = "key_json")]
    record: KeyView,
    /// Live connections closed.
    disconnected: usize,
    /// The key was revoked before this command (nothing changed but `--disconnect`).
    already_revoked: bool,
}

async fn revoke(stages: &Path, aws: &AwsTarget, ui: &Ui, args: RevokeArgs) -> Result<Outcome> {
    // A key revoked before this command started was already revoked: the stores keep the
    // first revocation time.
    let started = now_ms();
    let target = Target::resolve(stages, aws, &args.target).await?;
    let written_to = target.guard_write().await?;
    let stage = target.stage_name().to_owned();
    let request = AdminRequest::RevokeKey { key_id: args.id.clone(), disconnect: args.disconnect };
    let (record, disconnected) = match target.call(&request).await.map(|a| a.reply) {
        Ok(AdminReply::KeyRevoked { record, disconnected }) => (record, disconnected),
        Ok(other) => return Err(unexpected(&other)),
        Err(e) if e.is_not_found() => {
            bail!("key {} not found on stage '{stage}' (see `wsctl keys list --stage {stage}`)", args.id)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(stage = %stage, key_id = %record.key_id, disconnected, "API key revoked");
    let already_revoked = record.revoked_at.is_some_and(|at| at < started);
    let report = Revoked { stage, record, disconnected, already_revoked };
    ui.emit(&with_target(&report, &written_to)?, || {
        let at = report.record.revoked_at.map_or_else(|| "now".into(), utc);
        let verb = if already_revoked { "already revoked" } else { "revoked" };
        print!("{verb} {} ({:?}) on stage {} at {at}", report.record.key_id, report.record.name, report.stage);
        if args.disconnect {
            println!("; closed {} live connection(s)", report.disconnected);
        } else {
            println!("; its live connections stay open until they end (use --disconnect to close them)");
        }
        Ok(())
    })?;
    Ok(Outcome::Success)
}

/// What `keys delete` prints: the record as it was.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Deleted {
    stage: String,
    #[serde(flatten, serialize_with = "key_json")]
    record: KeyView,
}

async fn delete(stages: &Path, aws: &AwsTarget, ui: &Ui, args: DeleteArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let written_to = target.guard_write().await?;
    let stage = target.stage_name().to_owned();
    let record = match target.call(&AdminRequest::DeleteKey { key_id: args.id.clone() }).await.map(|a| a.reply) {
        Ok(AdminReply::KeyDeleted { record }) => record,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) if e.is_not_found() => {
            bail!("key {} not found on stage '{stage}' (see `wsctl keys list --stage {stage}`)", args.id)
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(stage = %stage, key_id = %record.key_id, "API key deleted");
    let report = Deleted { stage, record };
    ui.emit(&with_target(&report, &written_to)?, || {
        println!(
            "deleted {} ({:?}) on stage {}: it can no longer connect; connections it holds stay open until they \
             end (`wsctl keys revoke --disconnect` before deleting closes them)",
            report.record.key_id, report.record.name, report.stage
        );
        Ok(())
    })?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_a_number_and_a_unit_between_a_minute_and_ten_years() {
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_lifetime("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_lifetime("3600s"), Ok(Duration::from_secs(3_600)));
        for bad in ["", "30", "d", "1.5d", "30 days", "-1d", "30D"] {
            assert!(parse_lifetime(bad).is_err_and(|e| e.contains("e.g. 30d")), "{bad}");
        }
        assert!(parse_lifetime("59s").is_err_and(|e| e.contains("shorter than a minute")));
        assert!(parse_lifetime("3651d").is_err_and(|e| e.contains("ten years")));
        assert!(parse_lifetime("99999999999999999999d").is_err(), "overflow is refused, not wrapped");
    }
}
