#!/usr/bin/env bash
# The declarative install, proven end to end on loopback (scripts/release.sh runs it; ~40 s):
#
#   scripts/oci-proof.sh LAYOUT BINARY
#
# LAYOUT is the OCI image layout scripts/oci-image.sh built from BINARY (tag = its --version).
# 1. A real registry (Debian's docker-registry, installed when missing) on 127.0.0.1, its own
#    config and storage; the image pushed with skopeo, digests kept.
# 2. A non-dev OpenBao server (Raft, init + unseal, plugin_directory, plugin_auto_download,
#    the `plugin "secret"` stanza with sha256sum) downloads, verifies and registers it; then
#    `secrets enable`, `config` against fake-qlik, `rotate`, `key`, `creds`.
# 3. Refusals, with the server's own messages: a wrong sha256sum (the server exits: "plugin
#    hash mismatch"), a version that is not the binary's own (init refused: "plugin version
#    mismatch"), the registry down (the server exits; with plugin_download_behavior =
#    "continue" it starts without the plugin: nothing downloaded; a server that had it cached
#    before unseals and serves its mounts).
# Environment: BAO_BIN (bao binary), FAKE_QLIK (fake-qlik binary). Stops what it started, by
# PID, and removes its work directory, also on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/lab.sh
source scripts/lib/lab.sh

(($# == 2)) || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
layout="$(realpath "$1")"
binary="$(realpath "$2")"
bao="${BAO_BIN:?set BAO_BIN to the bao binary}"
fake_qlik="${FAKE_QLIK:?set FAKE_QLIK to the fake-qlik binary}"
name=vault-plugin-secrets-qlik
version="$("${binary}" --version)"
sha="$(sha256sum "${binary}" | cut -d' ' -f1)"
lab_need docker-registry docker-registry
lab_need skopeo skopeo

work="$(mktemp -d "${TMPDIR:-/tmp}/qlik-oci-proof.XXXXXX")"
trap 'lab_cleanup; rm -rf "${work}"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unset VAULT_ADDR VAULT_TOKEN BAO_TOKEN BAO_NAMESPACE

step "Registry on loopback, image pushed"
lab_registry_start
lab_push "${layout}" "${version}" "${name}"
image="${registry}/${name}"
# The same image under a tag that is not the binary's version (the refusal below).
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
    "docker://${image}:${version}" "docker://${image}:v9.9.9"
lab_fake_start

step "A non-dev server installs it from the registry (plugin stanza with sha256sum)"
lab_server_config ok "$(lab_stanza "${image}" "${version}" "${sha}")"
sed 's/^/    /' "${work}/ok/server.hcl"
lab_server_start ok || { cat "${work}/ok/server.log" >&2; die "the server exited"; }
grep -q "downloaded plugin: plugin=secret-${name}" "${work}/ok/server.log" ||
    { cat "${work}/ok/server.log" >&2; die "the server log does not say it downloaded the plugin"; }
lab_server_init ok || die "init refused"
info="$("${bao}" plugin info -format=json -version="${version}" secret "${name}")"
python3 - "${sha}" "${version}" "${name}" "${info}" <<'PY'
import json, sys
sha, version, name, info = sys.argv[1:5]
d = json.loads(info)
d = d.get("data", d)
assert d["sha256"] == sha and d["version"] == version, d
assert d["command"] == f"secret-{name}-{version}", d
print("catalog:", d["name"], d["version"], "sha256", d["sha256"], "command", d["command"])
PY
link="${work}/ok/plugins/secret-${name}-${version}"
[[ -L "${link}" ]] || die "no ${link}"
[[ "$(sha256sum "$(readlink -f "${link}")" | cut -d' ' -f1)" == "${sha}" ]] || die "the cached binary is not the one pinned"
echo "cache: ${link} -> $(readlink "${link}")"
"${bao}" secrets enable -path=qlik -plugin-version="${version}" "${name}"
"${bao}" write qlik/config tenant_url="$(fake_ready url)" api_key="$(fake_ready api_key)" ca_cert=@"$(fake_ready ca_cert)" >/dev/null
rotated="$("${bao}" write -format=json -f qlik/rotate | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"]["key_id"])')"
echo "rotate: the stored key is now ${rotated}"
"${bao}" read -format=json qlik/key | python3 -c 'import json,sys
r = json.load(sys.stdin)
assert r["lease_id"].startswith("qlik/key/") and r["data"]["key_id"] == sys.argv[1], r
print("key: lease", r["lease_id"], "ttl", r["lease_duration"])' "${rotated}"
"${bao}" write qlik/roles/app expiry=PT1H >/dev/null
"${bao}" read -format=json qlik/creds/app | python3 -c 'import json,sys
r = json.load(sys.stdin)
assert r["lease_id"].startswith("qlik/creds/app/") and r["data"]["api_key"], r
print("creds: lease", r["lease_id"], "ttl", r["lease_duration"], "key", r["data"]["key_id"])'
running="$("${bao}" secrets list -format=json | python3 -c 'import json,sys;m=json.load(sys.stdin)["qlik/"];print(m["running_plugin_version"], m["running_sha256"])')"
[[ "${running}" == "${version} ${sha}" ]] || die "qlik/ runs '${running}', expected '${version} ${sha}'"
echo "qlik/ runs ${running}"
"${bao}" lease revoke -prefix qlik/ >/dev/null
lab_stop "${server_pid}"

step "Refused: a wrong sha256sum (the server exits)"
wrong="$(printf '%064d' 0)"
lab_server_config badsha "$(lab_stanza "${image}" "${version}" "${wrong}")"
if lab_server_start badsha; then die "the server started with a wrong sha256sum"; fi
expected="plugin hash mismatch: expected ${wrong}, got ${sha}"
grep -F "${expected}" "${work}/badsha/server.log" || { cat "${work}/badsha/server.log" >&2; die "no '${expected}'"; }
[[ ! -e "${work}/badsha/plugins/secret-${name}-${version}" ]] || die "the mismatching binary was installed"

step "Refused: a version that is not the binary's own (init fails, the server stays sealed)"
lab_server_config badversion "$(lab_stanza "${image}" v9.9.9 "${sha}")"
lab_server_start badversion || { cat "${work}/badversion/server.log" >&2; die "the server exited"; }
if said="$(lab_server_init badversion)"; then die "init succeeded with a wrong version"; fi
expected="plugin version mismatch: ${name} reported version (${version}) did not match requested version (v9.9.9)"
grep -F "${expected}" <<<"${said}" || { echo "${said}" >&2; die "no '${expected}'"; }
[[ "$("${bao}" status -format=json | python3 -c 'import json,sys;print(json.load(sys.stdin)["sealed"])' || true)" == True ]] ||
    die "the server unsealed without the plugin"
lab_stop "${server_pid}"

step "Registry down, default plugin_download_behavior (\"fail\"): the server exits"
lab_stop "${registry_pid}"
lab_server_config downfail "$(lab_stanza "${image}" "${version}" "${sha}")"
if lab_server_start downfail; then die "the server started with the registry down"; fi
grep -F "Error downloading plugins: failed to download plugin \"secret-${name}\"" "${work}/downfail/server.log" ||
    { cat "${work}/downfail/server.log" >&2; die "no download error"; }

step "Registry down, plugin_download_behavior = \"continue\""
lab_server_config down "plugin_download_behavior = \"continue\"
$(lab_stanza "${image}" "${version}" "${sha}")"
lab_server_start down || { cat "${work}/down/server.log" >&2; die "the server exited with the registry down"; }
grep -F "failed to download plugin: plugin=secret-${name}" "${work}/down/server.log" ||
    die "the server did not say the download failed"
[[ ! -e "${work}/down/plugins/secret-${name}-${version}" ]] || die "a binary appeared with the registry down"
echo "the server started without the plugin (nothing in its plugin_directory)"
# OpenBao 2.7.2 still registers every declared plugin at unseal: without the binary, init is
# refused until the registry is back or the stanza goes.
if said="$(lab_server_init down)"; then die "init succeeded without the plugin's binary"; fi
grep -F "error while validating the command path" <<<"${said}" || { echo "${said}" >&2; die "unexpected init error"; }
lab_stop "${server_pid}"
# A server that downloaded it before restarts from its cache and serves its mounts.
printf 'plugin_download_behavior = "continue"\n' >>"${work}/ok/server.hcl"
lab_server_start ok || { tail -20 "${work}/ok/server.log" >&2; die "the server exited"; }
lab_server_unseal ok || die "unseal refused with the plugin cached"
"${bao}" read -format=json qlik/key | python3 -c 'import json,sys
r = json.load(sys.stdin); assert r["data"]["key_id"] == sys.argv[1], r
print("registry down, cached plugin: qlik/key answers")' "${rotated}"
"${bao}" lease revoke -prefix qlik/ >/dev/null
lab_stop "${server_pid}"

step "OCI proof passed: ${image}:${version} downloaded, verified (sha256 ${sha}), registered, mounted; refusals as expected"
