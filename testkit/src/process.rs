//! Finding programs, spawning them tied to the test process, and the life cycle shared by
//! every service (spawn, wait until ready, stop, restart, kill on drop).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, TempDir, TestkitError};

/// Looks for `program`: first the environment variable `env_override` (a path), then every
/// directory of `PATH`, then the usual system directories.
pub(crate) fn find_program(
    program: &'static str,
    env_override: &str,
    hint: &'static str,
) -> Result<PathBuf, TestkitError> {
    if let Some(p) = std::env::var_os(env_override).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(TestkitError::NotInstalled { program, searched: format!("${env_override}={}", p.display()), hint })
        };
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for d in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    for d in &dirs {
        let candidate = d.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(TestkitError::NotInstalled {
        program,
        searched: format!("${env_override}, PATH, /usr/local/bin, /usr/bin, /usr/sbin"),
        hint,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it cannot outlive the test process.
///
/// On Linux the child gets `PR_SET_PDEATHSIG = SIGKILL`. The kernel sends that signal when
/// the *thread* that forked the child exits, and test harnesses run each test on its own
/// short-lived thread; so every child is forked by one long-lived spawner thread, which
/// only ends with the process. A service kept in a `static` (never dropped) is therefore
/// still killed when the test binary exits, even on a crash or SIGKILL of the test binary.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only calls the
        // async-signal-safe functions prctl(2) and getppid(2).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited before the child started"));
                }
                Ok(())
            });
        }
    }
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("wsctl-testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the wsctl-testkit spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx)).map_err(|_| io::Error::other("the wsctl-testkit spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the wsctl-testkit spawner thread is gone"))?
}

/// Builds a service's argument list for a port.
pub(crate) type ArgsFn = Box<dyn Fn(u16) -> Vec<OsString> + Send + Sync>;

/// One long-running service process on a loopback port, with its log in a temp dir.
pub(crate) struct Service {
    pub(crate) name: &'static str,
    program: PathBuf,
    args: ArgsFn,
    envs: Vec<(OsString, OsString)>,
    pub(crate) port: u16,
    child: Option<Child>,
    pub(crate) dir: TempDir,
    log_path: PathBuf,
    /// Where the current run's output starts in the log file.
    log_offset: u64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Service {
    pub(crate) fn new(name: &'static str, program: PathBuf, args: ArgsFn) -> Result<Service, TestkitError> {
        let dir =
            TempDir::new(&format!("wsctl-testkit-{name}")).map_err(|e| TestkitError::io("create a temp dir", e))?;
        let log_path = dir.join(format!("{name}.log"));
        Ok(Service { name, program, args, envs: Vec::new(), port: 0, child: None, dir, log_path, log_offset: 0 })
    }

    pub(crate) fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) {
        self.envs.push((k.into(), v.into()));
    }

    /// Starts on a free port and waits until `probe(port)` is true; if another process took
    /// the port first, tries again on a new one (three attempts).
    pub(crate) fn start(&mut self, timeout: Duration, probe: &dyn Fn(u16) -> bool) -> Result<(), TestkitError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port();
            self.spawn()?;
            match self.wait_ready(timeout, probe) {
                Ok(()) => return Ok(()),
                Err(TestkitError::Exited { log_tail, .. }) if attempt < 3 && port_taken(&log_tail) => continue,
                Err(e) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
    }

    /// Starts again on the same port (after `stop`, or kills the running process first).
    pub(crate) fn restart(&mut self, timeout: Duration, probe: &dyn Fn(u16) -> bool) -> Result<(), TestkitError> {
        self.kill();
        let deadline = Instant::now() + timeout;
        loop {
            self.spawn()?;
            match self.wait_ready(deadline.saturating_duration_since(Instant::now()), probe) {
                Ok(()) => return Ok(()),
                // The old process's socket may linger for a moment; try again until the deadline.
                Err(TestkitError::Exited { log_tail, .. }) if port_taken(&log_tail) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| TestkitError::io(format!("open {}", self.log_path.display()), e))?;
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().map_err(|e| TestkitError::io("clone a log file handle", e))?;
        let mut cmd = Command::new(&self.program);
        cmd.args((self.args)(self.port))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = spawn_tied(cmd).map_err(|e| TestkitError::io(format!("spawn {}", self.program.display()), e))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self, timeout: Duration, probe: &dyn Fn(u16) -> bool) -> Result<(), TestkitError> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            if probe(self.port) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(TestkitError::Timeout {
                    what: format!("{} to answer on 127.0.0.1:{}", self.name, self.port),
                    waited: start.elapsed(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `Ok` while the process runs; `NotRunning` after `stop`; `Exited` if it died.
    pub(crate) fn check_alive(&mut self) -> Result<(), TestkitError> {
        let Some(child) = self.child.as_mut() else {
            return Err(TestkitError::NotRunning { service: self.name });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(TestkitError::Exited { service: self.name, status, log_tail: self.log_tail() })
            }
            Err(e) => Err(TestkitError::io(format!("check on {}", self.name), e)),
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process (SIGKILL) and reaps it; a no-op when it is not running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last 40 lines the current run wrote to stdout/stderr.
    pub(crate) fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            if f.seek(SeekFrom::Start(self.log_offset)).is_ok() {
                let _ = f.read_to_string(&mut s);
            }
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn port_taken(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("eaddrinuse")
}

/// Gives a child started with a cleared environment (`env_clear`) the coverage
/// instrumentation's `LLVM_PROFILE_FILE`, which `cargo llvm-cov` sets for the test run:
/// without it the child writes its profile to `default.profraw` in its working directory,
/// where the coverage report never looks. Does nothing outside a coverage run.
pub fn keep_coverage_profile(cmd: &mut Command) -> &mut Command {
    if let Some(pattern) = std::env::var_os("LLVM_PROFILE_FILE") {
        cmd.env("LLVM_PROFILE_FILE", pattern);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let err = find_program(
            "wsctl-testkit-no-such-program",
            "WSCTL_TESTKIT_NO_SUCH_PROGRAM",
            "apt-get install -y nothing",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TestkitError::NotInstalled { .. }), "{msg}");
        assert!(msg.contains("apt-get install -y nothing") && msg.contains("wsctl-testkit-no-such-program"), "{msg}");
    }

    #[test]
    fn finds_sh() {
        assert!(find_program("sh", "WSCTL_TESTKIT_NO_SUCH_VAR", "").is_ok());
    }

    #[test]
    fn port_taken_matches_both_servers() {
        assert!(port_taken(
            "# Warning: Could not create server TCP listening socket 127.0.0.1:1: bind: Address already in use"
        ));
        assert!(port_taken("OSError: [Errno 98] Address already in use"));
        assert!(!port_taken("Ready to accept connections"));
    }
}
