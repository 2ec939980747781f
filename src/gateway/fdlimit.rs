//! File-descriptor limits: raise the soft limit to the hard one (the `rlimit` crate), and
//! pre-grow the fd table so the kernel does not resize it (stalling every thread for
//! 12–30 ms at 256, 512, 1024, …) while connections arrive.

/// Raises RLIMIT_NOFILE to its hard limit and pre-grows the fd table for about `want`
/// descriptors; returns the soft limit now in force, if it could be read.
pub fn raise_and_pregrow(want: usize) -> Option<u64> {
    let soft = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    #[cfg(unix)]
    pregrow(want, soft);
    Some(soft)
}

/// Duplicates stderr onto descriptor `want + 64` (below the soft limit) and closes it at
/// once: the kernel grows the table to that size in one step.
#[cfg(unix)]
fn pregrow(want: usize, soft: u64) {
    let Ok(target) = libc::c_int::try_from((want as u64 + 64).min(soft.saturating_sub(1))) else { return };
    if target <= 3 {
        return;
    }
    // SAFETY: fcntl only asks whether `target` is open; dup2 onto it happens only when it
    // is not (so no descriptor of ours is replaced), and the duplicate is closed at once.
    unsafe {
        if libc::fcntl(target, libc::F_GETFD) == -1 && libc::dup2(2, target) == target {
            libc::close(target);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Size of this process's fd table, from `/proc/self/status` (`FDSize`).
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn soft_limit_reaches_the_hard_one_and_the_table_grows() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let soft = raise_and_pregrow(3000).expect("the limit is readable");
        assert_eq!(soft, hard);
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap().0, hard);
        if hard > 3100 {
            assert!(fd_table_size() >= 3064, "FDSize {} after pre-growing for 3000", fd_table_size());
        }
    }
}
