//! File-descriptor limits: raise the soft limit to the hard one, and pre-grow the fd
//! table so the kernel does not resize it (stalling every thread for 12–30 ms at 256,
//! 512, 1024, …) while connections arrive.

/// Raises RLIMIT_NOFILE and pre-grows the fd table for about `want` descriptors.
pub fn raise_and_pregrow(want: usize) {
    #[cfg(unix)]
    unsafe_impl::run(want);
}

#[cfg(unix)]
mod unsafe_impl {
    pub fn run(want: usize) {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        let target = (want as u64 + 64).min(lim.rlim_cur.saturating_sub(1)) as libc::c_int;
        if target <= 3 {
            return;
        }
        // SAFETY: dup2 onto an unused high descriptor grows the table; we close it at once.
        unsafe {
            if libc::fcntl(target, libc::F_GETFD) == -1 && libc::dup2(2, target) == target {
                libc::close(target);
            }
        }
    }
}
