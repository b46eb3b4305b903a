# shellcheck shell=bash
# Shared by scripts/oci-proof.sh and scripts/upgrade.sh (sourced, not run): a loopback lab of
# real processes (Debian's docker-registry, non-dev OpenBao servers on Raft, fake-qlik), each
# started by PID and stopped by PID by lab_cleanup (call it from an EXIT trap).
#
# The caller sets: work (a fresh directory of its own), bao (the bao binary).

lab_pids=()

die() { printf '\n%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }

lab_cleanup() {
    local pid
    for pid in "${lab_pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
    for pid in "${lab_pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
}

# Stops one process the lab started.
lab_stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# A free loopback port whose successor is free too (an OpenBao listener + its cluster port).
lab_port() {
    python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: t.close()'
}

# Installs a Debian package when its command is missing.
lab_need() {
    local tool="$1" package="$2" sudo=""
    command -v "${tool}" >/dev/null && return
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    command -v apt-get >/dev/null || die "${tool} not found: install ${package}"
    echo "${tool} not found: installing the Debian package ${package}"
    { ${sudo} apt-get install -y --no-install-recommends "${package}" ||
        { ${sudo} apt-get update && ${sudo} apt-get install -y --no-install-recommends "${package}"; }; } ||
        die "could not install ${package}; run: sudo apt-get install -y ${package}"
}

# Starts the CNCF distribution registry (Debian: docker-registry) on 127.0.0.1 with its own
# config and storage under $work/registry; sets registry (HOST:PORT) and registry_pid.
lab_registry_start() {
    local port
    port="$(lab_port)"
    mkdir -p "${work}/registry/data"
    cat >"${work}/registry/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${work}/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
YML
    docker-registry serve "${work}/registry/config.yml" >>"${work}/registry/log" 2>&1 </dev/null &
    registry_pid=$!
    lab_pids+=("${registry_pid}")
    registry="127.0.0.1:${port}"
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://${registry}/v2/" 2>/dev/null && return
        sleep 0.1
    done
    cat "${work}/registry/log" >&2
    die "the registry did not start"
}

# Pushes OCI layout $1 tag $2 to $registry/$3:$2 (digests kept) and checks the registry's digest.
lab_push() {
    local layout="$1" tag="$2" repo="$3" want got
    skopeo copy -q --dest-tls-verify=false --preserve-digests \
        "oci:${layout}:${tag}" "docker://${registry}/${repo}:${tag}"
    want="$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "${layout}/index.json")"
    got="$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://${registry}/${repo}:${tag}")"
    [[ "${got}" == "${want}" ]] || die "the registry holds ${repo}:${tag} as ${got}, the layout as ${want}"
    echo "pushed ${registry}/${repo}:${tag} ${got}"
}

# Writes the config of server $1 (a name: its files are under $work/$1) with extra HCL $2,
# on a fresh port; sets port.
lab_server_config() {
    local name="$1" extra="$2" dir="${work}/$1"
    port="$(lab_port)"
    mkdir -p "${dir}/data" "${dir}/plugins" "${dir}/tmp"
    cat >"${dir}/server.hcl" <<HCL
storage "raft" {
  path    = "${dir}/data"
  node_id = "${name}"
}
listener "tcp" {
  address     = "127.0.0.1:${port}"
  tls_disable = true
}
api_addr         = "http://127.0.0.1:${port}"
cluster_addr     = "https://127.0.0.1:$((port + 1))"
plugin_directory = "${dir}/plugins"
${extra}
HCL
    echo "${port}" >"${dir}/port"
}

# Starts server $1 from its config; sets server_pid and exports BAO_ADDR. Returns 1 when the
# server exits before its API answers (the caller reads $work/$1/server.log).
lab_server_start() {
    local dir="${work}/$1" rc
    TMPDIR="${dir}/tmp" "${bao}" server -config="${dir}/server.hcl" >>"${dir}/server.log" 2>&1 </dev/null &
    server_pid=$!
    lab_pids+=("${server_pid}")
    export BAO_ADDR="http://127.0.0.1:$(cat "${dir}/port")"
    for _ in $(seq 150); do
        # `status` exits 2 while sealed, 0 unsealed, 1 while not answering.
        rc=0; "${bao}" status >/dev/null 2>&1 || rc=$?
        [[ ${rc} == 1 ]] || return 0
        kill -0 "${server_pid}" 2>/dev/null || return 1
        sleep 0.2
    done
    die "server $1 did not answer (log: ${dir}/server.log)"
}

# Initialises the started server $1 (one key share) and unseals it; exports BAO_TOKEN.
# Prints the server's error and returns 1 when init is refused.
lab_server_init() {
    local dir="${work}/$1" init
    unset BAO_TOKEN
    init="$("${bao}" operator init -key-shares=1 -key-threshold=1 -format=json 2>"${dir}/init.err")" ||
        { cat "${dir}/init.err"; return 1; }
    printf '%s' "${init}" >"${dir}/init.json"
    lab_server_unseal "$1"
}

# Unseals server $1 with the key of its init; exports BAO_TOKEN. Returns 1 when refused.
lab_server_unseal() {
    local dir="${work}/$1" key
    key="$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["unseal_keys_b64"][0])' "${dir}/init.json")"
    BAO_TOKEN="$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["root_token"])' "${dir}/init.json")"
    export BAO_TOKEN
    "${bao}" operator unseal "${key}" >/dev/null 2>"${dir}/unseal.err" || { cat "${dir}/unseal.err"; return 1; }
    for _ in $(seq 150); do
        "${bao}" secrets list >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "server $1 did not become active after unseal"
}

# Starts fake-qlik ($fake_qlik) with its state under $work/fake; sets fake_pid; `fake_ready
# FIELD` reads its ready line (url, api_key, ca_cert, control_url …).
lab_fake_start() {
    mkdir -p "${work}/fake"
    "${fake_qlik}" --listen 127.0.0.1:0 --state-dir "${work}/fake" \
        >"${work}/fake/ready.json" 2>"${work}/fake/log" </dev/null &
    fake_pid=$!
    lab_pids+=("${fake_pid}")
    for _ in $(seq 100); do [[ -s "${work}/fake/ready.json" ]] && return; sleep 0.1; done
    cat "${work}/fake/log" >&2
    die "fake-qlik did not start"
}
fake_ready() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "${work}/fake/ready.json" "$1"; }

# The declarative plugin stanza for image $1 version $2 sha256 $3.
lab_stanza() {
    cat <<HCL
plugin_auto_download = true
plugin "secret" "vault-plugin-secrets-qlik" {
  image       = "$1"
  version     = "$2"
  binary_name = "vault-plugin-secrets-qlik"
  sha256sum   = "$3"
}
HCL
}
