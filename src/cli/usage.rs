//! A command line clap refused: its text on stderr and, under `--output json`, the JSON
//! error document on stdout.

use wsctl::exit::{Outcome, USAGE};
use wsctl::output::{print_json, ErrorBody, ErrorDocument};

/// Reports a command line that clap refused (or `--help`/`--version`, which exit 0):
/// clap's text on stderr, exit 64, and the JSON error document on stdout when the raw
/// arguments ask for `--output json`.
pub fn report_usage(err: &clap::Error, args: &[std::ffi::OsString]) -> u8 {
    if !err.use_stderr() {
        // --help, --version: print and succeed.
        let _ = err.print();
        return Outcome::Success.code();
    }
    let _ = err.print();
    if wants_json(args) {
        let rendered = err.render().to_string();
        let message = rendered.lines().next().unwrap_or("").trim_start_matches("error: ").to_owned();
        let doc = ErrorDocument { error: ErrorBody { kind: "usage", message, causes: Vec::new() }, exit_code: USAGE };
        let _ = print_json(&doc);
    }
    USAGE
}

/// True when the raw arguments contain `--output json` (or `--output=json`), for errors
/// raised before clap has produced a parsed command line.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.contains(&"--output=json") || args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_recognised_in_both_spellings_only() {
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&os(&["wsctl", "--output", "json", "plan"])));
        assert!(wants_json(&os(&["wsctl", "plan", "--output=json"])));
        assert!(!wants_json(&os(&["wsctl", "--output", "text", "json"])));
    }
}
