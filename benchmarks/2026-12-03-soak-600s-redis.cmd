# 2026-12-04 00:28:24 UTC start; commit 79878ef (release build); nproc 2; load 1.31 1.59 2.86
RUST_LOG=warn wsctl --stages-dir stages dev --port 53239 --state-dir ST --output json --redis-url redis://127.0.0.1:60873
wsctl --output json bench --url ws://127.0.0.1:53239/local --key $KEY --quiet --max-seconds 700 --server-pid 16290 --warmup 200 mixed -n 1000 --duration-s 600 --rooms 200 --lifetime-min-s 5 --lifetime-max-s 300 --publish-rate 200
# 2026-12-04 00:38:27 UTC end; exit 0; load 0.62 0.98 1.95
