#!/usr/bin/env bash
# Crash points (README "Reliability"): kills at every step of rotate, automatic rotation,
# creds and revocation, and of an OAuth client's secret rotation and a secret lease's end,
# then checks after recovery and tidy that nothing is lost and nothing is left behind.
#   - the plugin process killed, on a dev server (also in CI, except automatic rotation);
#   - the whole server killed (kill -9), on a single-node Raft server (storage survives),
#     restarted and unsealed.
# Takes a few minutes (each automatic-rotation point waits for the 60 s rollback tick).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export REQUIRE_BAO=1
start=$(date +%s)
cargo build --bin vault-plugin-secrets-qlik
log="$(mktemp)"
status=0
cargo nextest run --run-ignored all --no-capture \
    -E 'binary(e2e_crash) | test(killing_the_raft_server_at_every_step_loses_nothing)' "$@" \
    >"${log}" 2>&1 || status=$?
grep -E '^CRASH POINT|PASS|FAIL|panicked' "${log}" || true
[[ "${status}" == 0 ]] || tail -60 "${log}"
rm -f "${log}"
echo "crash points took $(($(date +%s) - start)) s (exit ${status})"
exit "${status}"
