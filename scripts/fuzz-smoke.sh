#!/usr/bin/env bash
# Bounded fuzz smoke run of every cargo-fuzz target in fuzz/: frame_parser, room_name,
# stage_file. Each target first replays its committed seeds (fuzz/seeds/TARGET, including
# regression inputs of bugs found earlier), then fuzzes for FUZZ_SECONDS with a memory cap.
# Any panic, assertion failure, timeout or RSS overrun fails the script; the crashing input
# is left in fuzz/artifacts/TARGET/ with the command that reproduces it.
#
# Runs on the stable toolchain: `--sanitizer none` needs no nightly flag (libFuzzer's
# coverage comes from the stable -Cpasses=sancov-module), so no RUSTC_BOOTSTRAP either.
# What is lost without AddressSanitizer is only memory-error detection, which safe Rust
# does not need; panics, overflows (debug assertions are on) and OOMs are all caught.
#
# Usage: scripts/fuzz-smoke.sh [TARGET...]     (default: all three)
# Env:   FUZZ_SECONDS   fuzzing time per target (default 30)
#        FUZZ_RSS_MB    libFuzzer -rss_limit_mb (default 2048)
#        FUZZ_TARGET_DIR cargo target dir of the fuzz crate (default fuzz/target)
#
# Cost: installs cargo-fuzz once (~1.5 min, `cargo install --locked`); the first build of
# the instrumented crate takes ~7-10 min on 2 cores (the handlers' AWS/Redis dependencies),
# later builds seconds; then FUZZ_SECONDS per target (~1.5 min for the default three).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
# Options of the build and of the run must match, or cargo-fuzz rebuilds.
FUZZ_FLAGS=(--sanitizer none --release --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "==> cargo fuzz build ${FUZZ_FLAGS[*]}"
cargo fuzz build "${FUZZ_FLAGS[@]}"

FAILED=()
for target in "${TARGETS[@]}"; do
    # libFuzzer writes new inputs into the first directory only; seeds stay read-only.
    mkdir -p "corpus/$target"
    max_len=65536
    [ "$target" = "stage_file" ] && max_len=8192
    echo "==> $target: ${SECONDS_PER_TARGET}s, rss <= ${RSS_MB} MB, inputs <= ${max_len} bytes"
    start=$SECONDS
    log="$CARGO_TARGET_DIR/fuzz-smoke-$target.log"
    set +e
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_MB" \
        -malloc_limit_mb="$RSS_MB" \
        -max_len="$max_len" \
        -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+.*(INITED|DONE)|Done |stat::(number_of_executed_units|peak_rss_mb))' "$log" || true
    if [ "$status" -ne 0 ]; then
        grep -A3 -E 'panicked at|ERROR: libFuzzer' "$log" >&2 || true
        grep -A2 -E '^(Failing input|Reproduce with):' "$log" >&2 || true
        echo "!!! $target failed (exit $status); the input is in fuzz/artifacts/$target/ (full log: $log)" >&2
        FAILED+=("$target")
        continue
    fi
    echo "--- $target: ok in $((SECONDS - start))s"
done
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "!!! fuzz smoke failed: ${FAILED[*]}" >&2
    exit 1
fi
echo "==> fuzz smoke passed: ${TARGETS[*]}"
