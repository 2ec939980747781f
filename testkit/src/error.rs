//! The one error type of the test kit.

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting, probing or stopping a test service.
///
/// Every variant's message says what was attempted and, where it helps, how to fix it
/// (for instance which package to install) and the tail of the service's log.
#[derive(Debug)]
#[non_exhaustive]
pub enum TestkitError {
    /// A program the tests need is not installed.
    NotInstalled {
        /// The program looked for, e.g. `redis-server`.
        program: &'static str,
        /// Where it was looked for.
        searched: String,
        /// How to install it, e.g. `apt-get install -y redis-server`.
        hint: &'static str,
    },
    /// An I/O operation failed.
    Io {
        /// What was being done, e.g. `spawn /usr/bin/redis-server`.
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A service process exited while it was expected to be running.
    Exited {
        /// The service, e.g. `redis-server`.
        service: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its output.
        log_tail: String,
    },
    /// Something did not happen within its deadline.
    Timeout {
        /// What was waited for.
        what: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last lines of the service's output, if a service was involved.
        log_tail: String,
    },
    /// A peer answered with something that does not follow its protocol (RESP, HTTP).
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// The service is stopped; call `restart()` first.
    NotRunning {
        /// The service, e.g. `moto_server`.
        service: &'static str,
    },
}

impl TestkitError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io { action: action.into(), source }
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        TestkitError::Protocol { detail: detail.into() }
    }
}

fn write_log_tail(f: &mut fmt::Formatter<'_>, log_tail: &str) -> fmt::Result {
    if log_tail.trim().is_empty() {
        Ok(())
    } else {
        write!(f, "\n--- last lines of its output ---\n{}", log_tail.trim_end())
    }
}

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestkitError::NotInstalled { program, searched, hint } => write!(
                f,
                "`{program}` is not installed (looked in {searched}); install it with `{hint}` \
                 (or run .ci/run, which installs everything the tests need)"
            ),
            TestkitError::Io { action, source } => write!(f, "{action}: {source}"),
            TestkitError::Exited { service, status, log_tail } => {
                write!(f, "{service} exited unexpectedly ({status})")?;
                write_log_tail(f, log_tail)
            }
            TestkitError::Timeout { what, waited, log_tail } => {
                write!(f, "timed out after {:.1}s waiting for {what}", waited.as_secs_f64())?;
                write_log_tail(f, log_tail)
            }
            TestkitError::Protocol { detail } => write!(f, "protocol error: {detail}"),
            TestkitError::NotRunning { service } => {
                write!(f, "{service} is stopped; call restart() before using it")
            }
        }
    }
}

impl std::error::Error for TestkitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestkitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
