# 2026-12-04 15:33-16:33 UTC, release build of the tree of 26c2cc5 (gateway code as 3259ed3), on the
# shared 2-core machine: cargo builds and tests beside it at 15:35-15:45 and a full .ci/run at 15:49-16:06.
RUST_LOG=warn wsctl --stages-dir stages --output json dev --port 18311 --state-dir STATE
wsctl --output json bench --url ws://127.0.0.1:18311/local --key KEY --quiet --server-pid PID --max-seconds 3780 \
  --label "soak 3600 s embedded" mixed --sample-ms 10000 -n 1000 --duration-s 3600 --rooms 200 \
  --publish-rate 200 --lifetime-min-s 5 --lifetime-max-s 300
