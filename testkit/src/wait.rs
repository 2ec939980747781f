//! Polling with a deadline, and free loopback ports.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// What a [`wait_for`] poll function may return: `bool` (done when `true`), `Option<T>`
/// (done on `Some`) or `Result<T, E>` (done on `Ok`).
pub trait PollOutcome {
    /// The value [`wait_for`] returns once done.
    type Output;
    /// `Some` once done.
    fn into_done(self) -> Option<Self::Output>;
}

impl PollOutcome for bool {
    type Output = ();
    fn into_done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> PollOutcome for Option<T> {
    type Output = T;
    fn into_done(self) -> Option<T> {
        self
    }
}

impl<T, E> PollOutcome for Result<T, E> {
    type Output = T;
    fn into_done(self) -> Option<T> {
        self.ok()
    }
}

/// Calls `poll` until it reports done or `timeout` has passed, sleeping between calls
/// (10 ms at first, backing off to 100 ms). `poll` is always called at least once, and once
/// more at the deadline.
///
/// Blocking: in async tests use it only from `spawn_blocking` or before the runtime has work
/// to do, or poll with the runtime's own timer instead.
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// let v = wsctl_testkit::wait_for(Duration::from_secs(1), || { n += 1; (n == 3).then_some(n) }).unwrap();
/// assert_eq!(v, 3);
/// ```
pub fn wait_for<P, F>(timeout: Duration, mut poll: F) -> Result<P::Output, TestkitError>
where
    P: PollOutcome,
    F: FnMut() -> P,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = poll().into_done() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TestkitError::Timeout {
                what: "a condition (wait_for)".to_string(),
                waited: now - start,
                log_tail: String::new(),
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the port the
/// kernel chose, and releases it.
///
/// Another process may take the port before the caller binds it; the services of this
/// crate retry with a new port when that happens.
///
/// # Panics
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local_addr of a bound listener").port()
}
