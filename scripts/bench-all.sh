#!/usr/bin/env bash
# Side-by-side benchmark: the local gateway (`wsctl dev`, embedded stores and Redis) against
# the peer references from /work/shared/peers (rawfan: the tokio-tungstenite ceiling;
# socketio: what users pick instead), measured in the same run by `wsctl bench` and by the
# independent client `fanbench`.
#
#   scripts/bench-all.sh                 run everything, append JSON lines, print the table
#   scripts/bench-all.sh --table [--markdown] FILE [RUN_ID|all]   tables of an earlier run
#   scripts/bench-all.sh --medians FILE  fan-out rounds (several runs in FILE): medians and
#                                        per-round ratios to rawfan, as a Markdown table
#
# Each measurement gets a fresh server on a fresh 127.0.0.1 port (and, for wsctl-redis, a
# fresh redis-server on a free port), one client run bounded by --max-seconds and
# `timeout`, then the server is stopped by its PID. Every JSON line carries run_id, target,
# tool, scenario, size, the exit code and the exact client command.
#
# Knobs (env), defaults in brackets:
#   TARGETS   ["wsctl wsctl-redis rawfan socketio"]   TOOLS ["wsctl fanbench"]
#   SCENARIOS ["connect fanout route mixed"]          SIZES ["1000 10000"]
#   MESSAGES [20] INTERVAL_MS [200] CONNECT_RATE [1000] SUB_RATE [2000] WARMUP [200]
#   HOLD_MS [2000] ROUTE_CONNS [200] ROUTE_RATE [5000] ROUTE_S [10]
#   MIXED_CONNS [1000] MIXED_S [60] MIXED_ROOMS [200] MIXED_CHURN [50] MIXED_PUBRATE [200]
#   MIXED_LIFE ["", e.g. "5 300"]: connection lifetimes MIN MAX seconds instead of MIXED_CHURN
#   SETTLE_MS [500]: fanout subscribers held this long before the first publish (15000 holds
#   them past every timer of the gateway)
#   OUT [bench-results/bench-<date>.jsonl] PEERS_SRC [/work/shared/peers] BASE_PORT [19700]
#   CARGO_TARGET_DIR [/root/.cache/wsctl-target]  WSCTL_BIN [build it: cargo build --release]
#   FANBENCH_BIN, RAWFAN_BIN [build them from the copy of PEERS_SRC]
#   GATEWAY_LOG [warn]: RUST_LOG of `wsctl dev` (its default logs every connect at info)
#   SOURCES [""]: `wsctl bench --sources N` (127.0.0.N source addresses; more ephemeral
#   ports for 19,000-connection runs back to back)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

table() { # table [--markdown] FILE [RUN_ID|all]
  python3 - "$@" <<'EOF'
import json, sys
args = sys.argv[1:]
md = bool(args) and args[0] == "--markdown"
if md: args = args[1:]
path = args[0]
recs = [json.loads(l) for l in open(path) if l.strip()]
want = args[1] if len(args) > 1 else next((r["run_id"] for r in reversed(recs) if "run_id" in r), None)
if want != "all":
    recs = [r for r in recs if r.get("run_id") == want]
def f(x, nd=2):
    if x is None: return "-"
    if isinstance(x, float): return f"{x:.{nd}f}"
    return str(x)
def g(r, *path):
    for p in path:
        if not isinstance(r, dict): return None
        r = r.get(p)
    return r
def emit(title, head, rows):
    if not rows: return
    print()
    if md:
        print(f"**{title}**\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in rows: print("| " + " | ".join(str(c) for c in row) + " |")
    else:
        print(title)
        w = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(head)]
        print("  ".join(str(h).rjust(w[i]) if i else str(h).ljust(w[i]) for i, h in enumerate(head)))
        for row in rows: print("  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(row)))
for m in (r for r in recs if r.get("kind") == "machine"):
    print(f"run {m['run_id']}: {m['date']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_total_mib']} MiB RAM, kernel {m['kernel']}, commit {m['commit']}, {m['rustc']}, node {m['node']}, {m['redis']}, load average at start {m.get('loadavg_at_start')}")
runs = [r for r in recs if r.get("kind") == "result"]
def err(r):
    if r.get("error"): return r["error"]
    if not any(k in r for k in ("connected", "subscribed", "sent", "deliveries")): return "no result"
    return None
rows = []
for r in runs:
    if r["scenario"] != "connect": continue
    if err(r): rows.append([r["target"], r["tool"], r["size"], "ERROR " + str(err(r))[:60]] + [""] * 7); continue
    c = r.get("connect_ms", {})
    rows.append([r["target"], r["tool"], r["size"], f(r.get("connected")), f(r.get("failed")), f(c.get("p50"), 3), f(c.get("p90"), 3),
                 f(c.get("p99"), 3), f(c.get("p999"), 3), f(c.get("max"), 1), f(g(r, "server", "kib_per_conn"))])
emit("CONNECT (N connections at CONNECT_RATE/s, held; connect latency in ms)",
     ["target", "tool", "N", "ok", "fail", "p50", "p90", "p99", "p99.9", "max", "KiB/conn"], rows)
rows = []
for r in runs:
    if r["scenario"] != "fanout": continue
    if err(r): rows.append([r["target"], r["tool"], r["size"], "ERROR " + str(err(r))[:60]] + [""] * 10); continue
    d, p = r.get("delivery_latency_ms", {}), r.get("publish_to_last_ms", {})
    # wsctl bench: the delivery accounting; fanbench: its top-level counts
    dl = r.get("delivery") or {"received": r.get("delivered"), "expected": r.get("expected"), "missing": r.get("missing"),
                               "reordered": r.get("reordered", g(r, "seq", "reordered"))}
    rows.append([r["target"], r["tool"], r["size"], f(r.get("subscribed")), f"{dl.get('received')}/{dl.get('expected')}", f(dl.get("missing")), f(dl.get("reordered")),
                 f(d.get("p50")), f(d.get("p99")), f(p.get("p50")), f(p.get("max"), 1), f(g(r, "burst_deliveries_per_s", "p50"), 0),
                 f(r.get("deliveries_per_s"), 0), f(g(r, "server", "cpu_s"))])
emit("FANOUT (S subscribers in one room, MESSAGES messages INTERVAL_MS apart; ms)",
     ["target", "tool", "S", "subs", "delivered", "miss", "reord", "lat p50", "lat p99", "p->last p50", "p->last max", "burst/s p50", "overall/s", "srv cpu s"], rows)
rows = []
for r in runs:
    if r["scenario"] != "route": continue
    if err(r): rows.append([r["target"], "ERROR " + str(err(r))[:60]] + [""] * 10); continue
    e = sum((r.get("errors") or {}).values())
    rows.append([r["target"], f(g(r, "connections", "connected")), f(r.get("rate_achieved"), 0), f(r.get("sent")), f(r.get("answered")), e, f(r.get("lost")),
                 f(g(r, "rtt_ms", "p50"), 3), f(g(r, "rtt_ms", "p99"), 3), f(g(r, "rtt_ms", "p999"), 3), f(g(r, "ping_ms", "p99"), 3), f(g(r, "subscribe_ms", "p99"), 3)])
emit("ROUTE (ping/subscribe round trips on held connections; ms)",
     ["target", "conns", "req/s", "sent", "answered", "errors", "lost", "rtt p50", "rtt p99", "rtt p99.9", "ping p99", "subscribe p99"], rows)
rows = []
for r in runs:
    if r["scenario"] != "mixed": continue
    if err(r): rows.append([r["target"], "ERROR " + str(err(r))[:60]] + [""] * 12); continue
    s, sv = r.get("delivery", {}), r.get("server") or {}
    e = sum((r.get("errors") or {}).values()) + sum((g(r, "publisher", "errors") or {}).values())
    rows.append([r["target"], f(r.get("duration_s"), 1), f(r.get("connections")), f(g(r, "churn", "connects_ok")), f"{s.get('received')}/{s.get('expected')}",
                 f(g(r, "delivery_latency_ms", "p99")), f(s.get("missing")), f(s.get("reordered")), f(s.get("duplicated")), e,
                 f(sv.get("rss_start_kib")), f(sv.get("rss_end_kib")), f(sv.get("rss_max_kib")), f(sv.get("rss_growth_kib_per_min_second_half"), 1)])
emit("MIXED (soak: churn + many rooms + publishes)",
     ["target", "secs", "slots", "opened", "delivered", "lat p99 ms", "miss", "reord", "dups", "errors", "rss start KiB", "end", "max", "KiB/min 2nd half"], rows)
def pick(target, tool, scen, size):
    for r in runs:
        if (r["target"], r["tool"], r["scenario"], r["size"]) == (target, tool, scen, size) and not err(r):
            return r
    return None
def ratio(a, b, lim, ge):
    if not a or not b: return "-"
    x = a / b
    return f"{x:.2f} ({'ok' if (x >= lim if ge else x <= lim) else 'MISSED'})"
rows = []
for tool in ("wsctl", "fanbench"):
    for size in sorted({r["size"] for r in runs if r["scenario"] == "fanout"}):
        raw, sio = pick("rawfan", tool, "fanout", size), pick("socketio", "fanbench", "fanout", size)
        for target in ("wsctl", "wsctl-redis"):
            ours = pick(target, tool, "fanout", size)
            if not ours: continue
            op, ob = g(ours, "publish_to_last_ms", "p50"), g(ours, "burst_deliveries_per_s", "p50")
            rp, rb, sb = g(raw, "publish_to_last_ms", "p50"), g(raw, "burst_deliveries_per_s", "p50"), g(sio, "burst_deliveries_per_s", "p50")
            dl = ours.get("delivery") or ours
            rows.append([target, tool, f"fanout S={size}", ratio(op, rp, 1.25, False), ratio(ob, rb, 0.8, True), ratio(ob, sb, 1.5, True),
                         f"missing {dl.get('missing')}, reordered {dl.get('reordered', g(ours, 'seq', 'reordered')) or 0}"])
    for size in sorted({r["size"] for r in runs if r["scenario"] == "connect"}):
        for target, lim in (("wsctl", 5.0), ("wsctl-redis", 10.0)):
            c = pick(target, tool, "connect", size)
            if not c: continue
            p99, kib = g(c, "connect_ms", "p99"), g(c, "server", "kib_per_conn")
            rows.append([target, tool, f"connect N={size}", f"p99 {f(p99, 3)} ms (<= {lim}: {'ok' if p99 is not None and p99 <= lim else 'MISSED'})",
                         f"{f(kib)} KiB/conn (<= 12: {'ok' if kib is not None and kib <= 12 else 'MISSED'})", "", ""])
for r in runs:
    if r["scenario"] == "route" and r["target"] in ("wsctl", "wsctl-redis") and not err(r):
        p99 = g(r, "rtt_ms", "p99")
        rows.append([r["target"], "wsctl", f"route {f(r.get('rate_achieved'), 0)}/s",
                     f"rtt p99 {f(p99, 3)} ms (<= 5: {'ok' if p99 is not None and p99 <= 5 else 'MISSED'})", "", "", ""])
emit("AGAINST THE TARGETS (same run; fan-out: ratios of publish->last p50 and of burst deliveries/s p50)",
     ["target", "tool", "what", "p->last / rawfan (<=1.25); connect p99; route p99", "burst / rawfan (>=0.8); KiB/conn", "burst / socketio (>=1.5)", "integrity"], rows)
EOF
}

# medians FILE: fan-out runs repeated in rounds (several run ids in one file, each with
# rawfan and the wsctl targets): per round the ratio to rawfan of the same round, then the
# median of each figure and of each ratio over the rounds.
medians() {
  python3 - "$@" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fan = [r for r in recs if r.get("scenario") == "fanout" and r.get("exit", 0) == 0]
rounds = {}
for r in fan:
    rounds.setdefault((r["run_id"], r["tool"], r["size"]), {})[r["target"]] = r
def p2l(r): return r["publish_to_last_ms"]["p50"]
def burst(r): return r["burst_deliveries_per_s"]["p50"]
out = {}
for (run, tool, size), by in sorted(rounds.items()):
    raw = by.get("rawfan")
    for target, r in by.items():
        o = out.setdefault((target, tool, size), {"rounds": [], "p2l": [], "burst": [], "p2l_ratio": [], "burst_ratio": [], "delivered": 0, "expected": 0, "missing": 0})
        o["rounds"].append(run); o["p2l"].append(p2l(r)); o["burst"].append(burst(r))
        o["delivered"] += r.get("delivered", 0); o["expected"] += r.get("expected", 0); o["missing"] += r.get("missing", 0)
        if raw and target != "rawfan":
            o["p2l_ratio"].append(p2l(r) / p2l(raw)); o["burst_ratio"].append(burst(r) / burst(raw))
print("| target | tool | S | rounds | p->last p50, median (min-max) ms | burst/s p50, median | p->last / rawfan, median (each round) | burst / rawfan, median (each round) | delivered / expected, missing |")
print("|---|---|---|---|---|---|---|---|---|")
med = statistics.median
rr = lambda xs: "%.2f (%s)" % (med(xs), ", ".join("%.2f" % x for x in xs)) if xs else "-"
for (target, tool, size), o in sorted(out.items()):
    print("| %s | %s | %s | %d | %.2f (%.2f-%.2f) | %.0f | %s | %s | %d / %d, %d |" % (
        target, tool, size, len(o["rounds"]), med(o["p2l"]), min(o["p2l"]), max(o["p2l"]), med(o["burst"]),
        rr(o["p2l_ratio"]), rr(o["burst_ratio"]), o["delivered"], o["expected"], o["missing"]))
EOF
}

if [ "${1:-}" = "--table" ]; then
  shift
  table "$@"
  exit 0
fi
if [ "${1:-}" = "--medians" ]; then
  shift
  medians "$@"
  exit 0
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/wsctl-target}
TARGETS=${TARGETS:-"wsctl wsctl-redis rawfan socketio"}
TOOLS=${TOOLS:-"wsctl fanbench"}
SCENARIOS=${SCENARIOS:-"connect fanout route mixed"}
SIZES=${SIZES:-"1000 10000"}
MESSAGES=${MESSAGES:-20}
INTERVAL_MS=${INTERVAL_MS:-200}
CONNECT_RATE=${CONNECT_RATE:-1000}
SUB_RATE=${SUB_RATE:-2000}
WARMUP=${WARMUP:-200}
HOLD_MS=${HOLD_MS:-2000}
ROUTE_CONNS=${ROUTE_CONNS:-200}
ROUTE_RATE=${ROUTE_RATE:-5000}
ROUTE_S=${ROUTE_S:-10}
MIXED_CONNS=${MIXED_CONNS:-1000}
MIXED_S=${MIXED_S:-60}
MIXED_ROOMS=${MIXED_ROOMS:-200}
MIXED_CHURN=${MIXED_CHURN:-50}
MIXED_PUBRATE=${MIXED_PUBRATE:-200}
MIXED_LIFE=${MIXED_LIFE:-}
SETTLE_MS=${SETTLE_MS:-500}
SOURCES=${SOURCES:-}
# the bench's hard bound: 300 s, or the soak plus its drain
MAX_S=$((MIXED_S + 100 > 300 ? MIXED_S + 100 : 300))
PEERS_SRC=${PEERS_SRC:-/work/shared/peers}
PORT=${BASE_PORT:-19700}
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench-results/bench-$(date -u +%F).jsonl}
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/wsctl-bench-all.XXXXXX)
SCRATCH=$WORK/scratch
mkdir -p "$SCRATCH"

log() { echo "== $*" >&2; }

# --- build -------------------------------------------------------------------------------
if [ -n "${WSCTL_BIN:-}" ]; then
  WSCTL=$WSCTL_BIN
else
  log "build wsctl (release)"
  cargo build --release -q --bin wsctl
  WSCTL=$CARGO_TARGET_DIR/release/wsctl
fi
cp -r "$PEERS_SRC" "$WORK/peers"
chmod -R u+w "$WORK/peers"
PEERS=$WORK/peers
needs_peer() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
FANBENCH="" RAWFAN=""
if [ -n "$(echo " $TOOLS " | grep ' fanbench ')" ]; then
  if [ -n "${FANBENCH_BIN:-}" ]; then
    FANBENCH=$FANBENCH_BIN
  else
    log "build fanbench"
    (cd "$PEERS/fanbench" && cargo build --release -q)
    FANBENCH=$CARGO_TARGET_DIR/release/fanbench
  fi
fi
if needs_peer rawfan; then
  if [ -n "${RAWFAN_BIN:-}" ]; then
    RAWFAN=$RAWFAN_BIN
  else
    log "build rawfan"
    (cd "$PEERS/rawfan" && cargo build --release -q)
    RAWFAN=$CARGO_TARGET_DIR/release/rawfan
  fi
fi
if needs_peer socketio; then
  log "install socketio (npm ci)"
  if ! (cd "$PEERS/socketio" && npm ci --no-audit --no-fund --silent); then
    log "npm ci failed: socketio skipped"
    TARGETS=$(echo "$TARGETS" | sed 's/socketio//')
  fi
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- machine record ------------------------------------------------------------------------
python3 - "$OUT" "$RUN_ID" <<EOF
import json, os, subprocess, sys
out, run_id = sys.argv[1:]
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return ""
rec = {"kind": "machine", "run_id": run_id, "date": sh("date -u '+%Y-%m-%d %H:%M:%S UTC'"),
       "cpus": int(sh("nproc") or 0), "cpu_model": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
       "mem_total_mib": int(sh("free -m | awk '/^Mem:/{print \$2}'") or 0), "kernel": os.uname().release,
       "commit": sh("git -C '$ROOT' rev-parse --short HEAD"), "rustc": sh("rustc --version"),
       "node": sh("node --version"), "redis": sh("redis-server --version"),
       "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
       "settings": dict(TARGETS="$TARGETS", TOOLS="$TOOLS", SCENARIOS="$SCENARIOS", SIZES="$SIZES", MESSAGES=$MESSAGES,
                        INTERVAL_MS=$INTERVAL_MS, CONNECT_RATE=$CONNECT_RATE, SUB_RATE=$SUB_RATE, WARMUP=$WARMUP,
                        HOLD_MS=$HOLD_MS, ROUTE_CONNS=$ROUTE_CONNS, ROUTE_RATE=$ROUTE_RATE, ROUTE_S=$ROUTE_S,
                        MIXED_CONNS=$MIXED_CONNS, MIXED_S=$MIXED_S, MIXED_ROOMS=$MIXED_ROOMS,
                        MIXED_CHURN=$MIXED_CHURN, MIXED_PUBRATE=$MIXED_PUBRATE, MIXED_LIFE="$MIXED_LIFE", SETTLE_MS=$SETTLE_MS)}
open(out, "a").write(json.dumps(rec) + "\n")
EOF

# --- servers -------------------------------------------------------------------------------
SERVER_PID="" REDIS_PID="" URL="" KEY=""
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
stop_servers() {
  stop_pid "$SERVER_PID"; SERVER_PID=""
  stop_pid "$REDIS_PID"; REDIS_PID=""
}
trap stop_servers EXIT
trap 'stop_servers; exit 130' INT TERM

# start_server TARGET LOGBASE: sets SERVER_PID, URL, KEY
start_server() {
  local target=$1 logb=$2 port
  PORT=$((PORT + 1))
  port=$PORT
  URL="" KEY=""
  case $target in
    wsctl | wsctl-redis)
      local redis_args=()
      if [ "$target" = wsctl-redis ]; then
        local rport
        rport=$(free_port)
        redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$logb.redis.log" 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
        redis_args=(--redis-url "redis://127.0.0.1:$rport")
      fi
      RUST_LOG=${GATEWAY_LOG:-warn} "$WSCTL" --stages-dir "$ROOT/stages" --output json dev --port "$port" --state-dir "$SCRATCH/state-$port" \
        "${redis_args[@]}" >"$logb.out" 2>"$logb.err" &
      SERVER_PID=$!
      for _ in $(seq 100); do
        if grep -q '"url"' "$logb.out" 2>/dev/null; then
          URL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$logb.out")
          KEY=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["apiKey"])' "$logb.out")
          break
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
      done
      ;;
    rawfan)
      "$RAWFAN" "$port" 2>"$logb.err" &
      SERVER_PID=$!
      for _ in $(seq 100); do grep -q listening "$logb.err" 2>/dev/null && { URL="ws://127.0.0.1:$port/"; break; }; sleep 0.1; done
      ;;
    socketio)
      node "$PEERS/socketio/server.js" "$port" 2>"$logb.err" &
      SERVER_PID=$!
      for _ in $(seq 100); do grep -q listening "$logb.err" 2>/dev/null && { URL="ws://127.0.0.1:$port"; break; }; sleep 0.1; done
      ;;
  esac
  if [ -z "$URL" ]; then
    echo "server $target did not start:" >&2
    cat "$logb".* >&2 || true
    return 1
  fi
  sleep 1 # let RSS settle
}

# record TARGET TOOL SCENARIO SIZE RC OUTFILE CMD...
record() {
  python3 - "$OUT" "$RUN_ID" "$@" <<'EOF'
import json, sys
out, run_id, target, tool, scenario, size, rc, tmp, errf, *cmd = sys.argv[1:]
try:
    rec = json.loads(open(tmp).read())
except Exception:
    try:
        rec = json.loads(open(tmp).read().strip().splitlines()[-1])
    except Exception:
        rec = {"error": f"exit {rc}: " + open(errf).read()[-400:].replace("\n", " ")}
if rec.get("scenario") == "mixed" and isinstance(rec.get("server"), dict):
    pass  # keep the RSS samples: they are the soak's memory curve
rec.update({"kind": "result", "run_id": run_id, "target": target, "tool": tool, "scenario": scenario,
            "size": int(size), "exit": int(rc), "cmd": " ".join(cmd)})
open(out, "a").write(json.dumps(rec) + "\n")
EOF
}

# run_one TARGET TOOL SCENARIO SIZE
run_one() {
  local target=$1 tool=$2 scenario=$3 n=$4
  local logb="$SCRATCH/$target-$tool-$scenario-$n"
  start_server "$target" "$logb" || { record "$target" "$tool" "$scenario" "$n" 99 /dev/null "$logb.err" "(server did not start)"; stop_servers; return 0; }
  local cmd=()
  if [ "$tool" = wsctl ]; then
    cmd=("$WSCTL" --output json bench --url "$URL" --quiet --max-seconds "$MAX_S" --server-pid "$SERVER_PID" --warmup "$WARMUP")
    [ -n "$KEY" ] && cmd+=(--key "$KEY")
    [ -n "$SOURCES" ] && cmd+=(--sources "$SOURCES")
    case $scenario in
      connect) cmd+=(connect -n "$n" --rate "$CONNECT_RATE" --hold-ms "$HOLD_MS") ;;
      fanout) cmd+=(fanout -s "$n" -m "$MESSAGES" --interval-ms "$INTERVAL_MS" --connect-rate "$SUB_RATE" --settle-ms "$SETTLE_MS") ;;
      route) cmd+=(route -n "$ROUTE_CONNS" --rate "$ROUTE_RATE" --duration-s "$ROUTE_S") ;;
      mixed)
        cmd+=(mixed -n "$MIXED_CONNS" --duration-s "$MIXED_S" --rooms "$MIXED_ROOMS" --publish-rate "$MIXED_PUBRATE")
        if [ -n "$MIXED_LIFE" ]; then
          read -r lmin lmax <<<"$MIXED_LIFE"
          cmd+=(--lifetime-min-s "$lmin" --lifetime-max-s "$lmax")
        else
          cmd+=(--churn-rate "$MIXED_CHURN")
        fi
        ;;
    esac
  else
    local url=$URL dialect=json
    [ "$target" = socketio ] && dialect=socketio
    [ -n "$KEY" ] && url="$URL?apiKey=$KEY"
    case $scenario in
      connect) cmd=("$FANBENCH" connect -n "$n" --rate "$CONNECT_RATE" --hold-ms "$HOLD_MS") ;;
      fanout) cmd=("$FANBENCH" fanout -s "$n" -m "$MESSAGES" --interval-ms "$INTERVAL_MS" --connect-rate "$SUB_RATE" --settle-ms "$SETTLE_MS" --publish-via-ws) ;;
    esac
    cmd+=(--dialect "$dialect" --url "$url" --server-pid "$SERVER_PID" --label "$target" --warmup "$WARMUP" --max-seconds 240 --json --quiet)
  fi
  log "$target / $tool / $scenario / $n (server pid $SERVER_PID)"
  local rc=0
  timeout $((MAX_S + 120)) "${cmd[@]}" >"$logb.json" 2>"$logb.client.err" || rc=$?
  stop_servers
  # the key is per run and local, but keep it out of the record anyway
  local shown=("${cmd[@]}")
  for i in "${!shown[@]}"; do
    [ -n "$KEY" ] && shown[i]=${shown[i]//$KEY/\$KEY}
    shown[i]=${shown[i]//$WSCTL/wsctl}
    [ -n "$FANBENCH" ] && shown[i]=${shown[i]//$FANBENCH/fanbench}
  done
  record "$target" "$tool" "$scenario" "$n" "$rc" "$logb.json" "$logb.client.err" "${shown[@]}"
}

for target in $TARGETS; do
  for scenario in $SCENARIOS; do
    for tool in $TOOLS; do
      # wsctl bench speaks only the json dialect; fanbench has connect and fanout only
      [ "$tool" = wsctl ] && [ "$target" = socketio ] && continue
      [ "$tool" = fanbench ] && [ -z "$FANBENCH" ] && continue
      case $scenario in
        connect | fanout) for n in $SIZES; do run_one "$target" "$tool" "$scenario" "$n"; done ;;
        route | mixed)
          [ "$tool" = wsctl ] || continue
          [ "$target" = socketio ] && continue
          size=$ROUTE_CONNS
          [ "$scenario" = mixed ] && size=$MIXED_CONNS
          run_one "$target" "$tool" "$scenario" "$size"
          ;;
      esac
    done
  done
done

log "results appended to $OUT (run_id $RUN_ID); scratch logs in $SCRATCH"
table "$OUT" "$RUN_ID"
