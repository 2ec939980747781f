//! `--watch`: run a listing again every interval. On a terminal the screen is redrawn in
//! place; otherwise each refresh is printed after the previous one (one JSON document per
//! line with `--output json`), so the output can be logged or piped.

use super::table::stdout_is_tty;
use crate::exit::Outcome;
use crate::ui::Ui;
use anyhow::{bail, Result};
use std::future::Future;
use std::io::Write;
use std::time::Duration;

/// Options of listings that can be watched.
#[derive(Debug, Clone)]
pub struct WatchArgs {
    /// Refresh the listing every --interval seconds until Ctrl-C (redrawn in place on a terminal).
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    pub interval: f64,
    /// Stop after this many refreshes (default: until Ctrl-C).
    pub iterations: Option<u64>,
}

/// What one refresh prints.
pub enum Frame {
    /// Text for a terminal.
    Text(String),
    /// A JSON document.
    Json(serde_json::Value),
}

impl Frame {
    /// The frame of `doc` for this output: the document itself under `--output json`,
    /// else its text rendering.
    pub fn of<T: serde::Serialize>(ui: &Ui, doc: &T, text: impl FnOnce(&T) -> String) -> Result<Frame> {
        Ok(if ui.json() { Frame::Json(serde_json::to_value(doc)?) } else { Frame::Text(text(doc)) })
    }
}

/// Runs `render` once, or repeatedly with `--watch`, printing each frame.
pub async fn run<F, Fut>(args: &WatchArgs, ui: &Ui, mut render: F) -> Result<Outcome>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Frame>>,
{
    if !args.watch {
        print_frame(render().await?, false)?;
        return Ok(Outcome::Success);
    }
    if !(0.2..=3600.0).contains(&args.interval) {
        bail!("--interval must be between 0.2 and 3600 seconds");
    }
    let in_place = stdout_is_tty() && !ui.json();
    let interval = Duration::from_secs_f64(args.interval);
    let mut done = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let started = tokio::time::Instant::now();
        let frame = render().await;
        match frame {
            Ok(frame) => {
                if in_place {
                    // Home, clear screen, then the frame under a one-line header.
                    print!("\x1b[H\x1b[2J");
                    println!(
                        "every {:.1}s, {} (Ctrl-C to stop)\n",
                        args.interval,
                        super::table::utc(wsctl_handlers::store::now_ms())
                    );
                }
                print_frame(frame, true)?;
            }
            // On a terminal a failed refresh is shown and retried; elsewhere it ends the watch.
            Err(e) if in_place => {
                print!("\x1b[H\x1b[2J");
                println!("refresh failed: {e:#}\nretrying every {:.1}s (Ctrl-C to stop)", args.interval);
                std::io::stdout().flush()?;
            }
            Err(e) => return Err(e),
        }
        done += 1;
        if args.iterations.is_some_and(|n| done >= n) {
            return Ok(Outcome::Success);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = &mut ctrl_c => return Ok(Outcome::Success),
        }
    }
}

fn print_frame(frame: Frame, watching: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match frame {
        Frame::Text(text) => {
            out.write_all(text.as_bytes())?;
            if watching {
                out.write_all(b"\n")?;
            }
        }
        // Watching prints one compact document per line (NDJSON); once prints it pretty.
        Frame::Json(mut v) if watching => {
            crate::output::times_as_rfc3339(&mut v);
            writeln!(out, "{}", serde_json::to_string(&v)?)?
        }
        Frame::Json(v) => crate::output::print_json(&v)?,
    }
    out.flush()?;
    Ok(())
}
