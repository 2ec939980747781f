#!/usr/bin/env bash
# Chaos run: normal clients (`wsctl bench mixed`, with per-subscriber delivery accounting)
# against `wsctl dev` while scripts/chaos.py runs N hostile sockets of each kind from their
# own loopback addresses. Samples the gateway's RSS, open file descriptors and the kernel's
# TCP memory before, during (the maximum) and after the chaos, and exits non-zero if the
# normal clients' accounting is not clean or the gateway does not come back down.
#
#   scripts/chaos.sh PATH/TO/wsctl          (a release build measures what users get)
#
# Knobs (env): CHAOS_S [60] chaos duration; CHAOS_PER_KIND [100]; CHAOS_CONNS [200] normal
# subscriber slots; CHAOS_OUT [a temp dir] where the reports go. Loopback only; every
# process it starts is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSCTL=${1:-${WSCTL:-}}
if [ -z "$WSCTL" ] || [ ! -x "$WSCTL" ]; then
  echo "usage: scripts/chaos.sh PATH/TO/wsctl" >&2
  exit 2
fi
CHAOS_S=${CHAOS_S:-60}
PER_KIND=${CHAOS_PER_KIND:-100}
CONNS=${CHAOS_CONNS:-200}
OUT=${CHAOS_OUT:-$(mktemp -d -t wsctl-chaos.XXXXXX)}
mkdir -p "$OUT"
STATE=$(mktemp -d -t wsctl-chaos-state.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$STATE"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$WSCTL" --stages-dir "$ROOT/stages" --output json dev --port "$port" --state-dir "$STATE" \
  >"$OUT/dev.out" 2>"$OUT/dev.err" &
DEV=$!
PIDS+=("$DEV")
for _ in $(seq 300); do grep -q '"url"' "$OUT/dev.out" 2>/dev/null && break; sleep 0.1; done
URL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$OUT/dev.out")
KEY=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["apiKey"])' "$OUT/dev.out")

# One sample: gateway RSS KiB, its open fds, kernel TCP memory KiB (sockstat counts pages).
sample() {
  local rss fds pages
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$DEV/status")
  fds=$(ls "/proc/$DEV/fd" | wc -l)
  pages=$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat)
  echo "$rss $fds $((pages * $(getconf PAGESIZE) / 1024))"
}
sleep 1
read -r rss0 fds0 tcp0 < <(sample)

# Normal clients for the whole run: 10 s alone, the chaos, 20 s alone again.
WSCTL_BENCH_KEY=$KEY "$WSCTL" --output json bench --url "$URL" --quiet --server-pid "$DEV" \
  --max-seconds $((CHAOS_S + 120)) --label "chaos normal clients" \
  mixed -n "$CONNS" --duration-s $((CHAOS_S + 30)) --rooms 40 --publish-rate 100 \
  --lifetime-min-s 5 --lifetime-max-s 60 >"$OUT/bench.json" &
BENCH=$!
PIDS+=("$BENCH")
sleep 10
python3 "$ROOT/scripts/chaos.py" --port "$port" --key "$KEY" --per-kind "$PER_KIND" --seconds "$CHAOS_S" \
  >"$OUT/chaos.json" &
CHAOS=$!
PIDS+=("$CHAOS")
rss1=0 fds1=0 tcp1=0
while kill -0 "$CHAOS" 2>/dev/null; do
  read -r r f t < <(sample)
  [ "$r" -gt "$rss1" ] && rss1=$r
  [ "$f" -gt "$fds1" ] && fds1=$f
  [ "$t" -gt "$tcp1" ] && tcp1=$t
  sleep 2
done
bench_code=0
wait "$BENCH" || bench_code=$?
sleep 5
read -r rss2 fds2 tcp2 < <(sample)

python3 - "$OUT" "$bench_code" "$rss0 $fds0 $tcp0" "$rss1 $fds1 $tcp1" "$rss2 $fds2 $tcp2" "$port" <<'EOF'
import json, sys, urllib.request
out, code, before, during, after, port = sys.argv[1], int(sys.argv[2]), *[list(map(int, a.split())) for a in sys.argv[3:6]], sys.argv[6]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
metrics = {l.split()[0]: int(float(l.split()[1])) for l in text.splitlines() if l.startswith("wsctl_") and "{" not in l}
bench = json.load(open(f"{out}/bench.json"))
chaos = json.load(open(f"{out}/chaos.json"))
d = bench["delivery"]
names = ["rssKiB", "fds", "kernelTcpKiB"]
summary = {
    "normalClients": {"exit": code, "expected": d["expected"], "received": d["received"], "missing": d["missing"],
                      "duplicated": d["duplicated"], "reordered": d["reordered"], "problems": bench.get("problems", [])},
    "gateway": {"before": dict(zip(names, before)), "duringMax": dict(zip(names, during)), "after": dict(zip(names, after))},
    "chaos": chaos,
    "gatewayMetrics": metrics,
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
[ "$bench_code" -eq 0 ] || { echo "chaos: the normal clients' accounting is not clean (exit $bench_code)" >&2; exit 1; }
