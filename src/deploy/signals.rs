//! Ctrl-C (SIGINT) and SIGTERM during `deploy` and `plan`: counted, not fatal, so the
//! engine can leave every stack in a state the next deploy resumes or rolls back, and say
//! which. The first signal asks the engine to stop; a second one stops waiting for
//! CloudFormation to finish what the first one started; a third exits at once.

use std::future::Future;
use tokio::sync::watch;

/// The signal count at which the process exits at once, whatever it is doing.
const FORCE_EXIT_AFTER: u32 = 3;

/// The number of stop signals received so far, shared by every part of one command run.
#[derive(Debug, Clone)]
pub struct Interrupt {
    count: watch::Receiver<u32>,
}

impl Interrupt {
    /// Starts counting SIGINT and SIGTERM. From here on neither ends the process by itself.
    pub fn install() -> Interrupt {
        let (tx, count) = watch::channel(0u32);
        tokio::spawn(async move {
            let mut term = terminate_signal();
            loop {
                let received = tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    r = next_terminate(&mut term) => r,
                };
                if !received {
                    // The signal cannot be listened to: behave as if none ever comes.
                    std::future::pending::<()>().await;
                }
                tx.send_modify(|n| *n += 1);
                if *tx.borrow() >= FORCE_EXIT_AFTER {
                    eprintln!(
                        "\ninterrupted {FORCE_EXIT_AFTER} times: exiting now; CloudFormation carries on with whatever \
                         it was doing (see `wsctl status`; the next deploy picks up from there)"
                    );
                    std::process::exit(i32::from(crate::exit::INTERRUPTED));
                }
            }
        });
        Interrupt { count }
    }

    /// Signals received so far.
    pub fn count(&self) -> u32 {
        *self.count.borrow()
    }

    /// At least one signal was received.
    pub fn fired(&self) -> bool {
        self.count() > 0
    }

    /// Resolves once more than `seen` signals were received.
    pub async fn after(&self, seen: u32) {
        let mut rx = self.count.clone();
        if rx.wait_for(|n| *n > seen).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs `work` to completion, or drops it when a first signal arrives (`None`).
    pub async fn guard<F: Future>(&self, work: F) -> Option<F::Output> {
        self.guard_after(0, work).await
    }

    /// Runs `work` to completion, or drops it when signal number `seen + 1` arrives.
    pub async fn guard_after<F: Future>(&self, seen: u32, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.after(seen) => None,
            out = work => Some(out),
        }
    }
}

#[cfg(unix)]
type Terminate = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Terminate = ();

#[cfg(unix)]
fn terminate_signal() -> Terminate {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}

#[cfg(not(unix))]
fn terminate_signal() -> Terminate {}

/// The next SIGTERM (`false` when it cannot be listened to; never resolves then).
#[cfg(unix)]
async fn next_terminate(term: &mut Terminate) -> bool {
    match term {
        Some(signal) => signal.recv().await.is_some(),
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_terminate(_: &mut Terminate) -> bool {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_guard_without_signals_runs_the_work() {
        let (_tx, count) = watch::channel(0u32);
        let i = Interrupt { count };
        assert_eq!(i.guard(async { 7 }).await, Some(7));
        assert!(!i.fired());
    }

    #[tokio::test]
    async fn a_closed_channel_is_not_a_signal() {
        let (tx, count) = watch::channel(0u32);
        drop(tx);
        let i = Interrupt { count };
        assert_eq!(i.guard(async { 1 }).await, Some(1));
    }

    #[tokio::test]
    async fn a_signal_drops_the_guarded_work_and_a_second_one_drops_the_next() {
        let (tx, count) = watch::channel(0u32);
        let i = Interrupt { count };
        tx.send_modify(|n| *n += 1);
        assert_eq!(i.guard(std::future::pending::<()>()).await, None);
        // Past the first signal, only a second one stops work.
        let waiting = i.guard_after(1, async { 3 });
        assert_eq!(waiting.await, Some(3));
        tx.send_modify(|n| *n += 1);
        assert_eq!(i.guard_after(1, std::future::pending::<()>()).await, None);
        assert_eq!(i.count(), 2);
    }
}
