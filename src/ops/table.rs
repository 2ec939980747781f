//! Plain-text tables sized to the terminal, and the time formats operator output uses.
//! Widths are display columns (`unicode-width`): a CJK character or an emoji takes two.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The width to fit tables into: the terminal's (stdout), else `COLUMNS`, else none
/// (output to a pipe or file is not truncated).
pub fn terminal_width() -> Option<usize> {
    console::Term::stdout()
        .size_checked()
        .map(|(_rows, cols)| usize::from(cols))
        .filter(|&c| c > 0)
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()).filter(|&c: &usize| c > 0))
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// A table: a header row, data rows, the columns that may be shortened to fit, and the
/// columns that may be left out (in that order) when shortening is not enough.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    shrinkable: Vec<bool>,
    droppable: Vec<usize>,
}

/// Narrowest a shrinkable column gets.
const MIN_SHRUNK: usize = 6;
const GAP: usize = 2;

impl Table {
    /// A table with these columns; `shrinkable` names the columns that may be cut to fit.
    pub fn new(headers: &[&'static str], shrinkable: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
            shrinkable: headers.iter().map(|h| shrinkable.contains(h)).collect(),
            droppable: Vec::new(),
        }
    }

    /// Columns to leave out, first to last, when the table is still too wide.
    pub fn droppable(mut self, columns: &[&'static str]) -> Self {
        self.droppable = columns.iter().filter_map(|c| self.headers.iter().position(|h| h == c)).collect();
        self
    }

    /// Adds a row (missing cells are blank, extra cells are dropped).
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table; with a `width`, shrinkable columns (widest first) are cut so each
    /// line fits (cut cells end in `…`), then droppable columns are left out if needed.
    pub fn render(&self, width: Option<usize>) -> String {
        let mut visible: Vec<usize> = (0..self.headers.len()).collect();
        let mut drops = self.droppable.iter();
        let widths = loop {
            let widths = self.fit_widths(&visible, width);
            let total = widths.iter().sum::<usize>() + GAP * visible.len().saturating_sub(1);
            match (width, drops.next()) {
                (Some(max), Some(col)) if total > max => visible.retain(|c| c != col),
                _ => break widths,
            }
        };
        let mut out = String::new();
        let headers: Vec<&str> = visible.iter().map(|&c| self.headers[c]).collect();
        push_line(&mut out, &headers, &widths);
        for row in &self.rows {
            let cells: Vec<&str> = visible.iter().map(|&c| row[c].as_str()).collect();
            push_line(&mut out, &cells, &widths);
        }
        out
    }

    /// Widths of the `visible` columns, shrunk (widest shrinkable first) toward `width`.
    fn fit_widths(&self, visible: &[usize], width: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = visible.iter().map(|&c| self.headers[c].width()).collect();
        for row in &self.rows {
            for (w, &c) in widths.iter_mut().zip(visible) {
                *w = (*w).max(row[c].width());
            }
        }
        if let Some(max) = width {
            let gaps = GAP * visible.len().saturating_sub(1);
            while widths.iter().sum::<usize>() + gaps > max {
                let widest = (0..visible.len())
                    .filter(|&i| self.shrinkable[visible[i]] && widths[i] > MIN_SHRUNK)
                    .max_by_key(|&i| widths[i]);
                match widest {
                    Some(i) => widths[i] -= 1,
                    None => break,
                }
            }
        }
        widths
    }
}

/// Appends one line: cells cut to their widths, padded, two spaces apart.
fn push_line(out: &mut String, cells: &[&str], widths: &[usize]) {
    let last = cells.len().saturating_sub(1);
    let parts: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(pos, (cell, &w))| {
            let mut cut = fit(cell, w);
            // No padding after the last column.
            if pos != last {
                let pad = w.saturating_sub(cut.width());
                cut.extend(std::iter::repeat_n(' ', pad));
            }
            cut
        })
        .collect();
    out.push_str(parts.join(&" ".repeat(GAP)).trim_end());
    out.push('\n');
}

/// Cuts `s` to at most `width` display columns, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        // Keep one column for the ellipsis.
        if used + w > width - 1 {
            break;
        }
        used += w;
        cut.push(c);
    }
    cut.push('…');
    cut
}

/// `2026-11-25 18:03:07Z` for an epoch-millisecond time (`?` beyond year 9999).
pub fn utc(ms: u64) -> String {
    let Some(t) = i64::try_from(ms / 1000).ok().and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) else {
        return "?".to_owned();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A short duration: `42s`, `5m12s`, `3h04m`, `2d05h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `ms` was, relative to `now_ms`: `5m12s ago`.
pub fn ago(ms: u64, now_ms: u64) -> String {
    format!("{} ago", duration(now_ms.saturating_sub(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_in_utc() {
        assert_eq!(utc(1_795_694_587_999), "2026-11-26 12:03:07Z", "milliseconds are dropped");
        assert_eq!(utc(253_402_300_799_000), "9999-12-31 23:59:59Z");
        assert_eq!(utc(u64::MAX), "?");
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_694_587_000), "2026-11-26 12:03:07Z");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(312_000), "5m12s");
        assert_eq!(duration(3 * 3_600_000 + 4 * 60_000), "3h04m");
        assert_eq!(duration(2 * 86_400_000 + 5 * 3_600_000), "2d05h");
    }

    #[test]
    fn tables_shrink_only_shrinkable_columns_to_fit() {
        let mut t = Table::new(&["ID", "AGENT", "ROOMS"], &["AGENT", "ROOMS"]);
        t.row(vec!["abc".into(), "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into(), "a,b".into()]);
        let wide = t.render(None);
        assert!(wide.contains("Firefox/120.0"));
        let narrow = t.render(Some(30));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 30, "{line:?} is wider than 30");
        }
        assert!(narrow.contains("abc") && narrow.contains('…'));
        // Nothing shrinkable left: lines stay whole rather than dropping the id.
        let tiny = t.render(Some(5));
        assert!(tiny.contains("abc"));
        // Droppable columns go, in order, when shrinking is not enough.
        let t = t.droppable(&["AGENT"]);
        let dropped = t.render(Some(12));
        assert!(!dropped.contains("AGENT") && dropped.contains("ROOMS"), "{dropped}");
    }

    /// Every line's display width (what a terminal shows), not its char count.
    fn columns(line: &str) -> usize {
        line.width()
    }

    #[test]
    fn wide_characters_keep_columns_aligned() {
        let mut t = Table::new(&["ROOM", "SUBS", "LAST"], &["ROOM"]);
        t.row(vec!["price:東京".into(), "3".into(), "x".into()]);
        t.row(vec!["tvl:🚀🚀".into(), "12".into(), "y".into()]);
        t.row(vec!["tvl:chain:ethereum".into(), "1".into(), "z".into()]);
        let out = t.render(None);
        let lines: Vec<&str> = out.lines().collect();
        // SUBS starts at the same display column on every line.
        let subs_col = |line: &str| {
            let end = line.find(|c: char| c.is_ascii_digit() || c == 'S').unwrap();
            columns(&line[..end])
        };
        let header = subs_col(lines[0]);
        assert_eq!(header, "tvl:chain:ethereum".len() + GAP, "{out}");
        for line in &lines[1..] {
            assert_eq!(subs_col(line), header, "{out}");
        }
        // Cut to fit: no line wider than the terminal, wide characters never split.
        let narrow = t.render(Some(20));
        for line in narrow.lines() {
            assert!(columns(line) <= 20, "{line:?} is {} columns", columns(line));
        }
        assert_eq!(fit("東京東京", 5), "東京…");
        assert_eq!(fit("東京東京", 4), "東…");
        assert_eq!(fit("🚀🚀🚀", 6), "🚀🚀🚀");
        assert_eq!(columns(&fit("🚀🚀🚀", 5)), 5);
    }
}
