//! `wsctl connections list|show|kick`.
//!
//! Local: the gateway answers typed admin requests. Deployed: records come from the
//! connections table (a Scan of the whole table, or a Query on the `byKey` index with
//! `--key`), are enriched with GetConnection from the management API, and rooms come from
//! Redis through the `admin` Lambda; `--room` asks the `admin` Lambda for the room's
//! members directly.

use super::table::{ago, stdout_is_tty, terminal_width, utc, Table};
use super::target::{unexpected, with_target, Admin, AdminError, Answer, Deployed, Target, TargetArgs};
use super::watch::{self, Frame, WatchArgs};
use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use wsctl_handlers::admin::{AdminReply, AdminRequest, ConnectionDetails, MAX_PAGE};
use wsctl_handlers::sender::{LiveInfo, Sender};
use wsctl_handlers::store::{now_ms, ConnectionRecord, ConnectionStore, RoomInfo};

/// Concurrent GetConnection calls while listing.
const LIVE_CONCURRENCY: usize = 16;
/// Concurrent `admin` Lambda invocations while mapping rooms to members.
const ROOM_CONCURRENCY: usize = 8;

/// `wsctl connections …`
#[derive(Debug)]
pub enum ConnectionsCommand {
    /// List live connections: id, key id, source IP, user agent, connected, last active, rooms.
    List(ListArgs),
    /// Everything known about one connection.
    Show(ShowArgs),
    /// Close a connection (DeleteConnection); the client sees a close and its $disconnect cleanup runs.
    Kick(KickArgs),
}

/// `wsctl connections list`
#[derive(Debug)]
pub struct ListArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Only members of this room.
    pub room: Option<String>,
    /// Only connections of this key id (key_…, never the key itself).
    pub key: Option<String>,
    /// Fetch at most N connections (default: every connection, over as many pages as it takes).
    pub limit: Option<u64>,
    /// Sort order.
    pub sort: SortBy,
    /// Deployed stages: skip GetConnection for each connection (much faster on very large
    /// stages; state and last activity are then not shown).
    pub no_live: bool,
    /// Refreshing with --watch.
    pub watch: WatchArgs,
}

/// Sort orders of `connections list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Oldest connection first.
    Connected,
    /// Most recently active first.
    LastActive,
    /// By key id, then oldest first.
    Key,
    /// By connection id.
    Id,
}

/// `wsctl connections show`
#[derive(Debug)]
pub struct ShowArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Connection id.
    pub id: String,
}

/// `wsctl connections kick`
#[derive(Debug)]
pub struct KickArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Connection id.
    pub id: String,
    /// Why (recorded in wsctl's output and log; API Gateway's DeleteConnection carries no reason to the client).
    pub reason: Option<String>,
}

/// Whether the gateway / management API knows the connection as open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveState {
    /// Open.
    Live,
    /// Closed, but its record is still in the table (its cleanup did not run yet or failed).
    Gone,
    /// The management API could not be asked.
    Unknown,
    /// Not asked (`--no-live`).
    Unchecked,
}

/// One connection as operators see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// Connection id.
    pub connection_id: String,
    /// Public id of its key.
    pub key_id: String,
    /// Client address.
    pub source_ip: String,
    /// Client user agent.
    pub user_agent: String,
    /// Connect time, epoch ms.
    pub connected_at: u64,
    /// Last activity, epoch ms (from the gateway / GetConnection).
    pub last_active_at: Option<u64>,
    /// Rooms it is in (None when Redis could not be asked).
    pub rooms: Option<Vec<String>>,
    /// Live state.
    pub state: LiveState,
    /// When the record expires (its DynamoDB TTL, kept in seconds), epoch ms.
    pub expires_at: u64,
    /// Frames received from the client, when the gateway reports them.
    pub messages_in: Option<u64>,
    /// Frames sent to the client, when the gateway reports them.
    pub messages_out: Option<u64>,
}

impl ConnectionView {
    fn new(record: ConnectionRecord, live: Option<&LiveInfo>, state: LiveState, rooms: Option<Vec<String>>) -> Self {
        let or_live =
            |own: String, live: Option<&str>| if own.is_empty() { live.unwrap_or("").to_owned() } else { own };
        // Message counters are optional fields of the live info (API Gateway's GetConnection
        // has none); read them by name so they show wherever a gateway reports them.
        let counter = |name: &str| {
            live.and_then(|l| serde_json::to_value(l).ok())
                .and_then(|v| v.get(name).and_then(serde_json::Value::as_u64))
        };
        let (messages_in, messages_out) = (counter("messagesIn"), counter("messagesOut"));
        ConnectionView {
            source_ip: or_live(record.source_ip, live.map(|l| l.source_ip.as_str())),
            user_agent: or_live(record.user_agent, live.map(|l| l.user_agent.as_str())),
            connection_id: record.connection_id,
            key_id: record.key_id,
            connected_at: record.connected_at,
            last_active_at: live.map(|l| l.last_active_at_ms),
            rooms,
            state,
            expires_at: record.ttl.saturating_mul(1000),
            messages_in,
            messages_out,
        }
    }

    fn from_details(d: ConnectionDetails) -> Self {
        let state = if d.live.is_some() { LiveState::Live } else { LiveState::Gone };
        ConnectionView::new(d.record, d.live.as_ref(), state, Some(d.rooms))
    }
}

/// What `connections list` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// Stage.
    pub stage: String,
    /// Connections listed.
    pub total: usize,
    /// True when `--limit` stopped the listing before the end.
    pub truncated: bool,
    /// The connections, sorted.
    pub connections: Vec<ConnectionView>,
    /// What could not be filled in, and why.
    pub warnings: Vec<String>,
}

/// Runs `wsctl connections …`.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, command: ConnectionsCommand) -> Result<Outcome> {
    match command {
        ConnectionsCommand::List(args) => list(stages, aws, ui, args).await,
        ConnectionsCommand::Show(args) => show(stages, aws, ui, args).await,
        ConnectionsCommand::Kick(args) => kick(stages, aws, ui, args).await,
    }
}

async fn list(stages: &Path, aws: &AwsTarget, ui: &Ui, args: ListArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    watch::run(&args.watch, ui, || async {
        let mut listing = fetch(&target, args.room.as_deref(), args.key.as_deref(), limit, !args.no_live).await?;
        sort(&mut listing.connections, args.sort);
        Frame::of(ui, &listing, |l| render_listing(l, args.watch.watch))
    })
    .await
}

/// Every connection matching the filters (at most `limit`), unsorted.
pub async fn fetch(
    target: &Target,
    room: Option<&str>,
    key: Option<&str>,
    limit: Option<usize>,
    check_live: bool,
) -> Result<Listing> {
    let mut listing = match (target, room) {
        (Target::Deployed(d), None) => bulk_list_deployed(d, key, limit, check_live).await?,
        _ => fetch_via_admin(&target.admin().await?, room, key, limit).await?,
    };
    listing.stage = target.stage_name().to_owned();
    listing.total = listing.connections.len();
    Ok(listing)
}

/// Pages through the admin endpoint's `list_connections`.
async fn fetch_via_admin(
    admin: &Admin<'_>,
    room: Option<&str>,
    key: Option<&str>,
    limit: Option<usize>,
) -> Result<Listing> {
    let mut connections = Vec::new();
    let mut cursor = None;
    let mut truncated = false;
    let page_size = admin.connection_page();
    loop {
        let want = limit.map_or(page_size, |l| (l - connections.len()).min(page_size));
        let request = AdminRequest::ListConnections {
            key_id: key.map(str::to_owned),
            room: room.map(str::to_owned),
            cursor: cursor.take(),
            limit: want,
        };
        let page = match admin.call(&request).await? {
            AdminReply::Connections { page } => page,
            other => return Err(unexpected(&other)),
        };
        // With both --room and --key, the room's members are filtered by key here.
        connections.extend(
            page.items
                .into_iter()
                .filter(|d| key.is_none_or(|k| d.record.key_id == k))
                .map(ConnectionView::from_details),
        );
        match page.next {
            Some(next) if limit.is_none_or(|l| connections.len() < l) => cursor = Some(next),
            Some(_) => {
                truncated = true;
                break;
            }
            None => break,
        }
    }
    Ok(Listing { stage: String::new(), total: 0, truncated, connections, warnings: Vec::new() })
}

/// The bulk read, an optimisation over paging through the `admin` function (50 connections
/// a page, each a DynamoDB read, a Redis read and a GetConnection inside the function):
/// a deployed stage without `--room` is listed from its table directly, then live state
/// (GetConnection, [`LIVE_CONCURRENCY`] at a time) and rooms (every active room's members,
/// through the function) are added.
async fn bulk_list_deployed(
    d: &Deployed,
    key: Option<&str>,
    limit: Option<usize>,
    check_live: bool,
) -> Result<Listing> {
    let store = d.connection_store().await?;
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    let mut truncated = false;
    loop {
        let want = limit.map_or(MAX_PAGE, |l| (l - records.len()).min(MAX_PAGE));
        let page = match key {
            Some(k) => store.list_by_key(k, cursor.as_deref(), want).await,
            None => store.list(cursor.as_deref(), want).await,
        }
        .with_context(|| format!("cannot read the connections table of stage '{}'", d.stage))?;
        records.extend(page.items);
        match page.next {
            Some(next) if limit.is_none_or(|l| records.len() < l) => cursor = Some(next),
            Some(_) => {
                truncated = true;
                break;
            }
            None => break,
        }
    }
    let mut warnings = Vec::new();
    let live = if check_live {
        live_states(d, &records, &mut warnings).await
    } else {
        records.iter().map(|_| (LiveState::Unchecked, None)).collect()
    };
    let rooms = if records.is_empty() {
        Some(HashMap::new())
    } else {
        match room_map(d).await {
            Ok(map) => Some(map),
            Err(e) => {
                warnings.push(format!("rooms unavailable (Redis is read through the admin function): {e:#}"));
                None
            }
        }
    };
    let connections = records
        .into_iter()
        .zip(live)
        .map(|(record, (state, info))| {
            let r = rooms.as_ref().map(|m| m.get(&record.connection_id).cloned().unwrap_or_default());
            ConnectionView::new(record, info.as_ref(), state, r)
        })
        .collect();
    Ok(Listing { stage: String::new(), total: 0, truncated, connections, warnings })
}

/// GetConnection for each record, a few at a time; failures become `Unknown` and one warning.
async fn live_states(
    d: &Deployed,
    records: &[ConnectionRecord],
    warnings: &mut Vec<String>,
) -> Vec<(LiveState, Option<LiveInfo>)> {
    let unknown = || records.iter().map(|_| (LiveState::Unknown, None)).collect();
    if records.is_empty() {
        return Vec::new();
    }
    let sender = match d.sender().await {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("live state unavailable: {e:#}"));
            return unknown();
        }
    };
    let results: Vec<_> =
        stream::iter(records).map(|r| sender.info(&r.connection_id)).buffered(LIVE_CONCURRENCY).collect().await;
    let mut failed = 0;
    let mut first_error = None;
    let states = results
        .into_iter()
        .map(|r| match r {
            Ok(Some(info)) => (LiveState::Live, Some(info)),
            Ok(None) => (LiveState::Gone, None),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
                (LiveState::Unknown, None)
            }
        })
        .collect();
    if let Some(e) = first_error {
        warnings.push(format!("GetConnection failed for {failed} connection(s), e.g. {e}"));
    }
    states
}

/// Connection id → its rooms, from every room with subscribers (through the admin function).
async fn room_map(d: &Deployed) -> Result<HashMap<String, Vec<String>>> {
    let admin = Admin::Lambda(d.admin_function().await?);
    let rooms = super::rooms::fetch_rooms(&admin, "", None).await?.0;
    let active: Vec<RoomInfo> = rooms.into_iter().filter(|r| r.subscribers > 0).collect();
    let members: Vec<(String, Vec<String>)> = stream::iter(active)
        .map(|r| {
            let admin = &admin;
            async move {
                match admin.call(&AdminRequest::ShowRoom { room: r.room.clone() }).await? {
                    AdminReply::Room { members, .. } => Ok((r.room, members)),
                    other => Err(unexpected(&other)),
                }
            }
        })
        .buffer_unordered(ROOM_CONCURRENCY)
        .try_collect()
        .await?;
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (room, ids) in members {
        for id in ids {
            map.entry(id).or_default().push(room.clone());
        }
    }
    for rooms in map.values_mut() {
        rooms.sort();
    }
    Ok(map)
}

fn sort(connections: &mut [ConnectionView], by: SortBy) {
    match by {
        SortBy::Connected => {
            connections.sort_by(|a, b| (a.connected_at, &a.connection_id).cmp(&(b.connected_at, &b.connection_id)))
        }
        SortBy::LastActive => {
            connections.sort_by(|a, b| (b.last_active_at, &a.connection_id).cmp(&(a.last_active_at, &b.connection_id)))
        }
        SortBy::Key => connections.sort_by(|a, b| {
            (&a.key_id, a.connected_at, &a.connection_id).cmp(&(&b.key_id, b.connected_at, &b.connection_id))
        }),
        SortBy::Id => connections.sort_by(|a, b| a.connection_id.cmp(&b.connection_id)),
    }
}

fn rooms_cell(rooms: &Option<Vec<String>>) -> String {
    match rooms {
        Some(r) if r.is_empty() => "-".into(),
        Some(r) => r.join(","),
        None => "?".into(),
    }
}

fn render_listing(listing: &Listing, watching: bool) -> String {
    let now = now_ms();
    let with_state = listing.connections.iter().any(|c| matches!(c.state, LiveState::Gone | LiveState::Unknown));
    let mut headers = vec!["CONNECTION", "KEY", "SOURCE IP", "CONNECTED", "LAST ACTIVE", "ROOMS", "USER AGENT"];
    if with_state {
        headers.insert(1, "STATE");
    }
    let mut table =
        Table::new(&headers, &["ROOMS", "USER AGENT"]).droppable(&["USER AGENT", "SOURCE IP", "LAST ACTIVE", "KEY"]);
    for c in &listing.connections {
        let mut row = vec![
            c.connection_id.clone(),
            c.key_id.clone(),
            c.source_ip.clone(),
            ago(c.connected_at, now),
            c.last_active_at.map_or_else(|| "-".into(), |t| ago(t, now)),
            rooms_cell(&c.rooms),
            c.user_agent.clone(),
        ];
        if with_state {
            row.insert(1, format!("{:?}", c.state).to_lowercase());
        }
        table.row(row);
    }
    let mut out = String::new();
    if !table.is_empty() {
        out.push_str(&table.render(terminal_width()));
    }
    let noun = if listing.total == 1 { "connection" } else { "connections" };
    out.push_str(&format!("{} {noun} on stage {}", listing.total, listing.stage));
    if listing.truncated {
        out.push_str(" (stopped at --limit; more exist)");
    }
    out.push('\n');
    // Warnings go to stderr once; when watching they are part of the frame.
    for w in &listing.warnings {
        if watching && stdout_is_tty() {
            out.push_str(&format!("warning: {w}\n"));
        } else {
            eprintln!("warning: {w}");
        }
    }
    out
}

async fn show(stages: &Path, aws: &AwsTarget, ui: &Ui, args: ShowArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let mut warnings = Vec::new();
    let view = match &target {
        Target::Local(_) => {
            let admin = target.admin().await?;
            match admin.call(&AdminRequest::ShowConnection { connection_id: args.id.clone() }).await {
                Ok(AdminReply::Connection { details }) => ConnectionView::from_details(details),
                Ok(other) => return Err(unexpected(&other)),
                Err(e) => return Err(not_found_hint(e, &args.id, "local")),
            }
        }
        Target::Deployed(d) => show_deployed(d, &args.id, &mut warnings).await?,
    };
    let mut doc = serde_json::to_value(&view)?;
    doc["stage"] = target.stage_name().into();
    if !warnings.is_empty() {
        doc["warnings"] = warnings.clone().into();
    }
    ui.emit(&doc, || {
        let now = now_ms();
        println!("connection   {}", view.connection_id);
        println!("stage        {}", target.stage_name());
        println!("state        {}", format!("{:?}", view.state).to_lowercase());
        println!("key id       {}", view.key_id);
        println!("source ip    {}", view.source_ip);
        println!("user agent   {}", view.user_agent);
        println!("connected    {} ({})", utc(view.connected_at), ago(view.connected_at, now));
        match view.last_active_at {
            Some(t) => println!("last active  {} ({})", utc(t), ago(t, now)),
            None => println!("last active  -"),
        }
        println!("expires      {} (record TTL)", utc(view.expires_at));
        match (view.messages_in, view.messages_out) {
            (Some(i), Some(o)) => println!("messages     {i} in, {o} out"),
            _ => println!("messages     not reported by this gateway"),
        }
        match &view.rooms {
            Some(rooms) => println!(
                "rooms        {} {}",
                rooms.len(),
                if rooms.is_empty() { String::new() } else { rooms.join(", ") }
            ),
            None => println!("rooms        unknown"),
        }
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        Ok(())
    })?;
    Ok(Outcome::Success)
}

/// Record from the table, live state from GetConnection, rooms from the admin function.
async fn show_deployed(d: &Deployed, id: &str, warnings: &mut Vec<String>) -> Result<ConnectionView> {
    let store = d.connection_store().await?;
    let record =
        store.get(id).await.with_context(|| format!("cannot read the connections table of stage '{}'", d.stage))?;
    let (state, live) = match d.sender().await?.info(id).await {
        Ok(Some(info)) => (LiveState::Live, Some(info)),
        Ok(None) => (LiveState::Gone, None),
        Err(e) => {
            warnings.push(format!("live state unavailable: {e}"));
            (LiveState::Unknown, None)
        }
    };
    let Some(record) = record else {
        if state == LiveState::Live {
            bail!(
                "connection {id} is open at the management API but has no record in the connections table of stage '{}' \
                 (its $connect handler may have failed); kick it with `wsctl connections kick {id} --stage {}`",
                d.stage,
                d.stage
            );
        }
        bail!(
            "connection {id} not found on stage '{}' (list them with `wsctl connections list --stage {}`)",
            d.stage,
            d.stage
        );
    };
    let rooms = match d.admin_function().await {
        Ok(f) => match Admin::Lambda(f).call(&AdminRequest::ShowConnection { connection_id: id.to_owned() }).await {
            Ok(AdminReply::Connection { details }) => Some(details.rooms),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => {
                warnings.push(format!("rooms unavailable: {e:#}"));
                None
            }
        },
        Err(e) => {
            warnings.push(format!("rooms unavailable: {e:#}"));
            None
        }
    };
    Ok(ConnectionView::new(record, live.as_ref(), state, rooms))
}

/// A missing connection told with where to look; any other failure as it is.
fn not_found_hint(e: AdminError, id: &str, stage: &str) -> anyhow::Error {
    if e.is_not_found() {
        anyhow!(
            "connection {id} not found on stage '{stage}' (list them with `wsctl connections list --stage {stage}`)"
        )
    } else {
        e.into()
    }
}

/// What `connections kick` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Kicked {
    stage: String,
    connection_id: String,
    /// The connection was open and was closed (false: it was already gone and its leftovers were removed).
    was_live: bool,
    reason: Option<String>,
    warnings: Vec<String>,
}

async fn kick(stages: &Path, aws: &AwsTarget, ui: &Ui, args: KickArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let written_to = target.guard_write().await?;
    let stage = target.stage_name().to_owned();
    let (was_live, warnings) = match target.call(&AdminRequest::KickConnection { connection_id: args.id.clone() }).await
    {
        Ok(Answer { reply: AdminReply::Kicked { was_live, .. }, warnings }) => (was_live, warnings),
        Ok(Answer { reply, .. }) => return Err(unexpected(&reply)),
        Err(e) => return Err(not_found_hint(e, &args.id, &stage)),
    };
    tracing::info!(stage = %stage, connection_id = %args.id, reason = args.reason.as_deref().unwrap_or(""), was_live, "connection kicked");
    let report = Kicked { stage, connection_id: args.id, was_live, reason: args.reason, warnings };
    ui.emit(&with_target(&report, &written_to)?, || {
        if report.was_live {
            println!("kicked {} on stage {}; its $disconnect cleanup runs", report.connection_id, report.stage);
        } else {
            println!("{} was already closed; removed its leftover record and memberships", report.connection_id);
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        Ok(())
    })?;
    Ok(Outcome::Success)
}
