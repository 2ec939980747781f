# 2026-12-04 01:13-01:33 UTC, release build of 4e100f5, on the shared 2-core machine while a
# full .ci/run (cargo test --workspace, lambda builds) ran beside it.
RUST_LOG=warn wsctl --stages-dir stages --output json dev --port 18111 --state-dir STATE
wsctl --output json bench --url ws://127.0.0.1:18111/local --quiet --server-pid PID --max-seconds 1320 \
  --label "soak 1200 s embedded" mixed --sample-ms 10000 -n 1000 --duration-s 1200 --rooms 200 \
  --publish-rate 200 --lifetime-min-s 5 --lifetime-max-s 300
