//! Which addresses `wsctl dev` may listen on. The gateway serves `@connections` and
//! `/metrics` without authentication (as a local stand-in for AWS), so binding anything
//! but loopback needs `--allow-remote`, and then prints a warning.

use anyhow::{bail, Result};
use std::net::IpAddr;

/// True when `host` names only this machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a non-loopback `host` unless `allow_remote`; with it, warns on stderr.
pub fn check_host(host: &str, allow_remote: bool) -> Result<()> {
    if is_loopback(host) {
        return Ok(());
    }
    if !allow_remote {
        bail!(
            "--host {host} would expose the gateway beyond this machine, including the unauthenticated \
             @connections API and /metrics; pass --allow-remote if that is what you want, or use --host 127.0.0.1"
        );
    }
    eprintln!(
        "warning: listening on {host}: anyone who can reach it can call @connections (post to or close any \
         connection) and read /metrics without a key; keep it behind a firewall"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_and_addresses_pass_without_allow_remote() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"] {
            assert!(is_loopback(host), "{host}");
            assert!(check_host(host, false).is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.168.1.10", "example.com"] {
            assert!(!is_loopback(host), "{host}");
            let err = check_host(host, false).expect_err(host).to_string();
            assert!(err.contains("--allow-remote"), "{err}");
            assert!(check_host(host, true).is_ok(), "{host}");
        }
    }
}
