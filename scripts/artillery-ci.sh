#!/usr/bin/env bash
# Runs loadtest/artillery.yml (Artillery 2, `engine: ws`) at CI scale against a fresh
# `wsctl dev` and fails unless every virtual user completed with no error: each VU connects
# with the dev key, subscribes, holds its connection past 15 s, pings and unsubscribes,
# matching every reply.
#
# Usage: scripts/artillery-ci.sh [WSCTL_BINARY]      (or $WSCTL; e.g. target/release/wsctl)
# Env:   ARTILLERY_VUS        virtual users, all arriving within 5 s (default 20)
#        WSCTL_TOOLS_DIR      where Artillery is installed (default ~/.cache/wsctl-tools)
#
# Needs node and npm (Node 18.20+ or 20+). Cost: the first run installs Artillery 2 with npm
# (~50 s and ~600 MB; lifecycle scripts are not run, no browser is downloaded), later runs
# reuse it; the scenario itself takes ~25 s. Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WSCTL="${1:-${WSCTL:-}}"
if [[ -z "$WSCTL" || ! -x "$WSCTL" ]]; then
    echo "artillery-ci: give the wsctl binary as the argument or in \$WSCTL (got '${WSCTL}');" \
        "build it with: cargo build --release" >&2
    exit 2
fi
VUS="${ARTILLERY_VUS:-20}"
TOOLS="${WSCTL_TOOLS_DIR:-$HOME/.cache/wsctl-tools}/artillery"
ARTILLERY="$TOOLS/node_modules/.bin/artillery"

if [[ ! -x "$ARTILLERY" ]]; then
    echo "artillery-ci: installing Artillery 2 into $TOOLS"
    started=$SECONDS
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$TOOLS" --no-audit --no-fund artillery@2 >&2
    echo "artillery-ci: installed in $((SECONDS - started)) s"
fi
version="$("$ARTILLERY" version 2>/dev/null | sed -n 's/^Artillery: *//p')"
if [[ "$version" != 2.* ]]; then
    echo "artillery-ci: expected Artillery 2 at $ARTILLERY, found '${version}'" >&2
    exit 2
fi
export ARTILLERY_DISABLE_TELEMETRY=true

WORK="$(mktemp -d)"
GATEWAY_PID=""
cleanup() {
    if [[ -n "$GATEWAY_PID" ]] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -INT "$GATEWAY_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$GATEWAY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$GATEWAY_PID" 2>/dev/null || true
        wait "$GATEWAY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0: the kernel picks a free loopback port; the JSON ready line says which.
"$WSCTL" --output json --stages-dir "$ROOT/stages" dev --host 127.0.0.1 --port 0 \
    --state-dir "$WORK/state" >"$WORK/dev.out" 2>"$WORK/dev.err" </dev/null &
GATEWAY_PID=$!
for _ in $(seq 600); do
    grep -q '"url"' "$WORK/dev.out" 2>/dev/null && break
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
        echo "artillery-ci: wsctl dev exited before it was ready:" >&2
        cat "$WORK/dev.err" >&2
        exit 1
    fi
    sleep 0.1
done
ready="$(grep -m1 '"url"' "$WORK/dev.out" || true)"
if [[ -z "$ready" ]]; then
    echo "artillery-ci: wsctl dev printed no ready line within 60 s:" >&2
    cat "$WORK/dev.err" >&2
    exit 1
fi
field() { node -e 'process.stdout.write(String(JSON.parse(process.argv[1])[process.argv[2]]))' "$ready" "$1"; }
export WSCTL_WS_URL="$(field url)"
export WSCTL_API_KEY="$(field apiKey)"
echo "artillery-ci: $VUS virtual users against $WSCTL_WS_URL"

overrides="{\"config\":{\"phases\":[{\"name\":\"ci\",\"duration\":5,\"arrivalCount\":$VUS}]}}"
status=0
timeout 300 "$ARTILLERY" run --overrides "$overrides" --output "$WORK/report.json" \
    "$ROOT/loadtest/artillery.yml" >"$WORK/artillery.log" 2>&1 || status=$?
if [[ $status -ne 0 || ! -s "$WORK/report.json" ]]; then
    cat "$WORK/artillery.log" >&2
    echo "artillery-ci: artillery exited with status $status" >&2
    exit 1
fi

# Every VU created must have completed; no VU failed; no error of any kind was counted.
verdict=0
node - "$WORK/report.json" "$VUS" <<'JS' || verdict=$?
const fs = require('fs');
const [report, expected] = [JSON.parse(fs.readFileSync(process.argv[2], 'utf8')), Number(process.argv[3])];
const c = report.aggregate.counters || {};
const created = c['vusers.created'] || 0;
const completed = c['vusers.completed'] || 0;
const failed = c['vusers.failed'] || 0;
const errors = Object.entries(c).filter(([k]) => k.startsWith('errors.'));
const pongs = c['websocket.messages_received'] || 0;
console.log(`artillery-ci: ${created} created, ${completed} completed, ${failed} failed, ` +
  `${pongs} replies received, errors: ${errors.length ? JSON.stringify(Object.fromEntries(errors)) : 'none'}`);
// Each VU sends 6 requests and matches 6 replies.
const ok = created === expected && completed === expected && failed === 0 && errors.length === 0 && pongs === 6 * expected;
process.exit(ok ? 0 : 1);
JS
if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
    echo "artillery-ci: wsctl dev died during the run:" >&2
    cat "$WORK/dev.err" >&2
    exit 1
fi
if [[ $verdict -ne 0 ]]; then
    cat "$WORK/artillery.log" >&2
    exit 1
fi
