#!/usr/bin/env bash
# A production lifetime in minutes (tests/e2e_soak.rs): short-lived key generations rotated
# by the server's own tick, readers of qlik/key and qlik/creds/app checking at the fake tenant
# that the key they hold works while its lease is live, one OAuth client whose secret rotates
# about every tick read through a token role, a shared token role and its secret (each token
# or secret checked at the tenant while its lease is live), and a nemesis on a seeded schedule
# (Qlik 5xx, 429, slow answers, connections dropped after Qlik acted, outages, kill -9 of the
# plugin, plugin reload, Raft server restarts, clock skew; with --cluster the active node
# killed). Prints the schedule, the failed reads, a summary table and one JSON line
# (`SOAK_JSON {...}`); fails if an invariant broke. Everything it starts is stopped by PID.
#
#   scripts/soak.sh                         # 60 minutes, single-node Raft, a random seed
#   scripts/soak.sh --minutes 30 --cluster  # 3-node Raft cluster
#   scripts/soak.sh --seed 1234             # replay a schedule
#   scripts/soak.sh --key-ttl 60 --seed 1234 # the same with key_ttl=60 on the mount (the
#                                           # summary's creds_refused_key_limit compares)
#   scripts/soak.sh --mounts 1000           # many tenants instead (tests/e2e_tenants.rs): M
#                                           # mounts, each its own Qlik user, in one process
#   scripts/soak.sh --mounts 300 --rounds 3 # ... and every mount's next 2 rotations (memory
#                                           # after each round)
#   scripts/soak.sh --plugin PATH ...       # run that plugin binary (e.g. the release build
#                                           # users install) instead of the test build
#
# CI runs the 6-minute soak (soak_short_single_node) and 50 mounts in scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes=60 seed="" nodes=1 mounts="" rounds=1 key_ttl=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --cluster) nodes=3; shift ;;
    --mounts) mounts="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --key-ttl) key_ttl="$2"; shift 2 ;;
    --plugin) QLIK_PLUGIN_BIN="$(realpath "$2")"; export QLIK_PLUGIN_BIN; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
export REQUIRE_BAO=1
if [[ -n "${mounts}" ]]; then
    QLIK_TENANTS_MOUNTS="${mounts}" QLIK_TENANTS_ROUNDS="${rounds}" exec cargo test --locked --test e2e_tenants -- --nocapture
fi
export QLIK_SOAK_MINUTES="${minutes}" QLIK_SOAK_SEED="${seed}" QLIK_SOAK_NODES="${nodes}" QLIK_SOAK_KEY_TTL="${key_ttl}"
cargo test --locked --test e2e_soak -- --ignored --exact soak_long --nocapture
