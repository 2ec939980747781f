//! How a command ended, and the one table that turns that into the process's exit code.
//! `docs/cli.md` documents the codes; scripts rely on them, so they never change.

use std::process::ExitCode;

/// Exit code for a command line that does not parse (BSD `EX_USAGE`), so it can never be
/// mistaken for `plan`'s "changes pending".
pub const USAGE: u8 = 64;

/// Exit code of a command stopped by a signal (128 + SIGINT, as shells report it); also
/// used directly by the third signal, which exits at once.
pub const INTERRUPTED: u8 = 130;

/// How a command that ran to its end finished. A command that fails with an error is
/// [`Outcome::Failure`] by way of [`crate::output::report_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, including "no changes" (exit 0).
    Success,
    /// The command ran and did not succeed, e.g. a stack failed or a function errored (exit 1).
    Failure,
    /// `plan` found changes to apply (exit 2).
    ChangesPending,
    /// Stopped by Ctrl-C or SIGTERM with every stack in a state the next run continues from (exit 130).
    Interrupted,
}

impl Outcome {
    /// The process exit code (docs/cli.md).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::ChangesPending => 2,
            Outcome::Interrupted => INTERRUPTED,
        }
    }

    /// [`Outcome::Success`] when `ok`, else [`Outcome::Failure`].
    pub fn success_if(ok: bool) -> Outcome {
        if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [Outcome::Success, Outcome::Failure, Outcome::ChangesPending, Outcome::Interrupted]
            .map(Outcome::code)
            .into();
        assert_eq!(codes, [0, 1, 2, 130]);
        assert_eq!(USAGE, 64);
    }
}
