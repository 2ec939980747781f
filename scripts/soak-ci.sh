#!/usr/bin/env bash
# CI soak: `wsctl bench mixed` against `wsctl dev` for SOAK_S seconds (60) with connection
# lifetimes of 5-60 s, first on the embedded stores, then on a redis-server it starts, then
# with two gateway processes on that Redis (subscribers on one, publishes through the other). Each
# bench checks every subscriber's deliveries (expected vs received, duplicates, reorders)
# and exits 1 on any problem; this script exits non-zero if either run does.
#
#   scripts/soak-ci.sh [WSCTL]      (or WSCTL=path/to/wsctl scripts/soak-ci.sh)
#
# Builds nothing. Everything listens on free 127.0.0.1 ports; every process it starts is
# stopped by its PID on exit. Knobs (env): SOAK_S [60] SOAK_CONNS [200] SOAK_ROOMS [40]
# SOAK_PUBRATE [100] SOAK_LIFE_MIN [5] SOAK_LIFE_MAX [60] SOAK_OUT [a temp dir]: where the
# JSON reports and the servers' logs go (kept when set).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSCTL=${1:-${WSCTL:-}}
if [ -z "$WSCTL" ] || [ ! -x "$WSCTL" ]; then
  echo "usage: scripts/soak-ci.sh PATH/TO/wsctl   (or set WSCTL)" >&2
  exit 2
fi
SOAK_S=${SOAK_S:-60}
SOAK_CONNS=${SOAK_CONNS:-200}
SOAK_ROOMS=${SOAK_ROOMS:-40}
SOAK_PUBRATE=${SOAK_PUBRATE:-100}
SOAK_LIFE_MIN=${SOAK_LIFE_MIN:-5}
SOAK_LIFE_MAX=${SOAK_LIFE_MAX:-60}
SCRATCH=$(mktemp -d -t wsctl-soak.XXXXXX)
OUTDIR=${SOAK_OUT:-$SCRATCH}
mkdir -p "$OUTDIR"

PIDS=()
stop_pid() {
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  rm -rf "$SCRATCH/state-"*
  [ -n "${SOAK_OUT:-}" ] || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_dev NAME [dev args…]: starts `wsctl dev`, sets DEV_PID, URL, KEY
start_dev() {
  local name=$1 port
  shift
  port=$(free_port)
  RUST_LOG=warn "$WSCTL" --stages-dir "$ROOT/stages" --output json dev --port "$port" \
    --state-dir "$SCRATCH/state-$name" "$@" >"$OUTDIR/$name.dev.out" 2>"$OUTDIR/$name.dev.err" &
  DEV_PID=$!
  PIDS+=("$DEV_PID")
  URL="" KEY=""
  for _ in $(seq 300); do
    if grep -q '"url"' "$OUTDIR/$name.dev.out" 2>/dev/null; then
      URL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$OUTDIR/$name.dev.out")
      KEY=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["apiKey"])' "$OUTDIR/$name.dev.out")
      return 0
    fi
    kill -0 "$DEV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "soak-ci: wsctl dev ($name) did not get ready; its stderr:" >&2
  cat "$OUTDIR/$name.dev.err" >&2
  return 1
}

# soak NAME [bench args…]: runs the bench against URL/KEY/DEV_PID; prints its text summary;
# returns its exit code
soak() {
  local name=$1 code=0
  shift
  WSCTL_BENCH_KEY=$KEY timeout $((SOAK_S + 120)) "$WSCTL" --output json bench --url "$URL" --quiet "$@" \
    --max-seconds $((SOAK_S + 60)) --server-pid "$DEV_PID" --label "soak-ci $name" \
    mixed -n "$SOAK_CONNS" --duration-s "$SOAK_S" --rooms "$SOAK_ROOMS" --publish-rate "$SOAK_PUBRATE" \
    --lifetime-min-s "$SOAK_LIFE_MIN" --lifetime-max-s "$SOAK_LIFE_MAX" >"$OUTDIR/$name.json" || code=$?
  python3 - "$OUTDIR/$name.json" "$name" "$code" <<'EOF' || true
import json, sys
path, name, code = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"soak-ci {name}: no report ({e}); exit {code}")
    sys.exit(0)
d, c, s = r["delivery"], r["churn"], r.get("server") or {}
print(f"soak-ci {name}: exit {code}; {r['duration_s']} s, {c['connects_ok']} connects "
      f"({c['lived_10s_or_more']} lived >= 10 s), {r['publisher']['acked']} publishes acked; "
      f"delivered {d['received']}/{d['expected']} expected, missing {d['missing']}, duplicated {d['duplicated']}, "
      f"reordered {d['reordered']}; rss {s.get('rss_start_kib')} -> {s.get('rss_end_kib')} KiB, "
      f"second half {s.get('rss_growth_kib_per_min_second_half')} KiB/min")
for p in r.get("problems", []):
    print(f"soak-ci {name}: PROBLEM {p}")
EOF
  return "$code"
}

status=0
start_dev embedded
soak embedded || status=1
stop_pid "$DEV_PID"

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$OUTDIR/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_dev redis --redis-url "redis://127.0.0.1:$rport"
soak redis || status=1

# Two gateway processes on that Redis: every subscriber on the first, every publish through
# the second, so each delivery crosses processes (the first has its own key).
FIRST_PID=$DEV_PID FIRST_URL=$URL FIRST_KEY=$KEY
start_dev redis-second --redis-url "redis://127.0.0.1:$rport"
SECOND_URL=$URL SECOND_KEY=$KEY
DEV_PID=$FIRST_PID URL=$FIRST_URL KEY=$FIRST_KEY
soak redis-two-processes --publish-url "$SECOND_URL" --publish-key "$SECOND_KEY" || status=1

[ -n "${SOAK_OUT:-}" ] && echo "soak-ci: reports in $OUTDIR"
exit "$status"
