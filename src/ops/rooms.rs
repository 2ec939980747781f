//! `wsctl rooms list|show`. Rooms live in Redis, which on a deployed stage sits inside the
//! VPC: wsctl asks the `admin` Lambda (locally, the gateway) with typed requests.

use super::table::{ago, terminal_width, utc, Table};
use super::target::{unexpected, Admin, Target, TargetArgs};
use super::watch::{self, Frame, WatchArgs};
use crate::aws::AwsTarget;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::path::Path;
use wsctl_handlers::admin::{AdminReply, AdminRequest, MAX_PAGE};
use wsctl_handlers::store::{now_ms, RoomInfo};

/// `wsctl rooms …`
#[derive(Debug)]
pub enum RoomsCommand {
    /// List rooms: subscribers, last publish, seq.
    List(ListArgs),
    /// One room and its members.
    Show(ShowArgs),
}

/// `wsctl rooms list`
#[derive(Debug)]
pub struct ListArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Only rooms whose name starts with this, e.g. `tvl:protocol:`.
    pub prefix: String,
    /// Fetch at most N rooms (default: all).
    pub limit: Option<u64>,
    /// Refreshing with --watch.
    pub watch: WatchArgs,
}

/// `wsctl rooms show`
#[derive(Debug)]
pub struct ShowArgs {
    /// Where the command acts.
    pub target: TargetArgs,
    /// Room name.
    pub room: String,
}

/// What `rooms list` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomListing {
    stage: String,
    total: usize,
    truncated: bool,
    rooms: Vec<RoomInfo>,
}

/// What `rooms show` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomView {
    stage: String,
    #[serde(flatten)]
    info: RoomInfo,
    members: Vec<String>,
}

/// Runs `wsctl rooms …`.
pub async fn run(stages: &Path, aws: &AwsTarget, ui: &Ui, command: RoomsCommand) -> Result<Outcome> {
    match command {
        RoomsCommand::List(args) => list(stages, aws, ui, args).await,
        RoomsCommand::Show(args) => show(stages, aws, ui, args).await,
    }
}

/// Every room whose name starts with `prefix` (at most `limit`), in name order, and
/// whether the limit cut the listing short.
pub async fn fetch_rooms(admin: &Admin<'_>, prefix: &str, limit: Option<usize>) -> Result<(Vec<RoomInfo>, bool)> {
    let mut rooms: Vec<RoomInfo> = Vec::new();
    let mut cursor = None;
    loop {
        let want = limit.map_or(MAX_PAGE, |l| (l - rooms.len()).min(MAX_PAGE));
        let request = AdminRequest::ListRooms { prefix: prefix.to_owned(), cursor: cursor.take(), limit: want };
        let page = match admin.call(&request).await? {
            AdminReply::Rooms { page } => page,
            other => return Err(unexpected(&other)),
        };
        rooms.extend(page.items);
        match page.next {
            Some(next) if limit.is_none_or(|l| rooms.len() < l) => cursor = Some(next),
            Some(_) => return Ok((rooms, true)),
            None => return Ok((rooms, false)),
        }
    }
}

async fn list(stages: &Path, aws: &AwsTarget, ui: &Ui, args: ListArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let admin = target.admin().await?;
    let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    watch::run(&args.watch, ui, || async {
        let (rooms, truncated) = fetch_rooms(&admin, &args.prefix, limit).await?;
        let listing = RoomListing { stage: target.stage_name().to_owned(), total: rooms.len(), truncated, rooms };
        Frame::of(ui, &listing, render_list)
    })
    .await
}

fn render_list(listing: &RoomListing) -> String {
    let now = now_ms();
    let mut table = Table::new(&["ROOM", "SUBSCRIBERS", "SEQ", "LAST PUBLISH"], &["ROOM"]);
    for r in &listing.rooms {
        table.row(vec![
            r.room.clone(),
            r.subscribers.to_string(),
            r.seq.to_string(),
            r.last_publish_ms.map_or_else(|| "never".into(), |t| ago(t, now)),
        ]);
    }
    let mut out = if table.is_empty() { String::new() } else { table.render(terminal_width()) };
    let noun = if listing.total == 1 { "room" } else { "rooms" };
    out.push_str(&format!("{} {noun} on stage {}", listing.total, listing.stage));
    if listing.truncated {
        out.push_str(" (stopped at --limit; more exist)");
    }
    out.push('\n');
    out
}

async fn show(stages: &Path, aws: &AwsTarget, ui: &Ui, args: ShowArgs) -> Result<Outcome> {
    let target = Target::resolve(stages, aws, &args.target).await?;
    let admin = target.admin().await?;
    let stage = target.stage_name().to_owned();
    let (info, members) = match admin.call(&AdminRequest::ShowRoom { room: args.room.clone() }).await {
        Ok(AdminReply::Room { info, members }) => (info, members),
        Ok(other) => return Err(unexpected(&other)),
        Err(e) if e.is_not_found() => {
            return Err(anyhow!(
                "room {} not found on stage '{stage}': it has no subscribers and no history (see `wsctl rooms list --stage {stage}`)",
                args.room
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let view = RoomView { stage, info, members };
    ui.emit(&view, || {
        let now = now_ms();
        println!("room          {}", view.info.room);
        println!("stage         {}", view.stage);
        println!("seq           {}", view.info.seq);
        match view.info.last_publish_ms {
            Some(t) => println!("last publish  {} ({})", utc(t), ago(t, now)),
            None => println!("last publish  never"),
        }
        println!("subscribers   {}", view.members.len());
        for m in &view.members {
            println!("  {m}");
        }
        Ok(())
    })?;
    Ok(Outcome::Success)
}
