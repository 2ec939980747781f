# 2026-12-04 00:18:20 UTC start; commit 79878ef (release build); nproc 2; load 1.39 3.30 4.21
RUST_LOG=warn wsctl --stages-dir stages dev --port 38483 --state-dir ST --output json 
wsctl --output json bench --url ws://127.0.0.1:38483/local --key $KEY --quiet --max-seconds 700 --server-pid 14671 --warmup 200 mixed -n 1000 --duration-s 600 --rooms 200 --lifetime-min-s 5 --lifetime-max-s 300 --publish-rate 200
# 2026-12-04 00:28:23 UTC end; exit 0; load 1.16 1.57 2.85
