CHAOS_S=60 CHAOS_PER_KIND=100 CHAOS_CONNS=200 scripts/chaos.sh target/release/wsctl   # release build of the commit that added this file
