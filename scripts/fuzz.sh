#!/usr/bin/env bash
# Fuzzes the plugin's parsers (README "Reliability"): the duration parser, the request data
# the server sends (protocol bytes and field JSON) and Qlik's responses. Not part of CI: it
# needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
#
#   scripts/fuzz.sh [SECONDS]      # each target for SECONDS (default 60)
#   TARGETS="duration" scripts/fuzz.sh 30
#
# Prints, per target, the executions and whether libFuzzer found a crash (a crash leaves its
# input under fuzz/artifacts/<target>/ and makes the script exit 1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds="${1:-60}"
targets="${TARGETS:-duration request_data qlik_response}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

mkdir -p corpus
# A few seeds so that the fuzzer starts from real shapes.
mkdir -p corpus/duration corpus/qlik_response corpus/request_data
for d in PT12H P1D P1DT6H P2W PT1.5H 12h 90m 1h30m 2d 3600 P1M PT0S; do
    printf '%s' "$d" > "corpus/duration/seed-$d"
done
printf '{"id":"k","status":"active","sub":"u","createdByUser":"u","description":"d","created":"2026-01-01T00:00:00Z","expiry":"2026-01-02T00:00:00Z"}' > corpus/qlik_response/seed-key
printf '{"errors":[{"code":"LOGIN-2","title":"Authorization Required","status":"401"}],"traceId":"x"}' > corpus/qlik_response/seed-error
printf '{"tenant_url":"https://a.eu.qlikcloud.com","api_key":"x","key_expiry":"PT24H","max_retries":"4","auto_rotate":true}' > corpus/request_data/seed-config

failed=0
summary=()
for target in $targets; do
    log="$(mktemp)"
    echo "==> fuzzing ${target} for ${seconds}s"
    if cargo +nightly fuzz run "${target}" -- -max_total_time="${seconds}" -rss_limit_mb=2048 \
        >"${log}" 2>&1; then
        outcome="no crash"
    else
        outcome="CRASH (see fuzz/artifacts/${target}/)"
        failed=1
        tail -40 "${log}"
    fi
    runs="$(grep -oE 'Done [0-9]+ runs' "${log}" | tail -1 | grep -oE '[0-9]+' || true)"
    if [[ -z "${runs}" ]]; then
        runs="$(grep -oE '#[0-9]+' "${log}" | tail -1 | tr -d '#' || true)"
    fi
    summary+=("${target}: ${runs:-?} executions in ${seconds}s, ${outcome}")
    rm -f "${log}"
done
echo
printf '%s\n' "${summary[@]}"
exit "${failed}"
