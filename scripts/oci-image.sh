#!/usr/bin/env bash
# Builds the OCI image of a plugin binary, the way OpenBao's declarative `plugin` stanza
# downloads it: an OCI image layout (a directory) holding one image, tagged with the binary's
# own `--version`, whose single tar+gzip layer holds exactly the binary at the image root.
#
#   scripts/oci-image.sh BINARY LAYOUT_DIR
#
# The image: platform linux/amd64; Entrypoint = /<binary name>; labels (config) and
# annotations (manifest) org.opencontainers.image.{source,version,revision,licenses}.
# Reproducible: the layer's file has a fixed mtime and owner 0:0, every timestamp (layer,
# config `created`, history) is SOURCE_DATE_EPOCH (default: the commit time of HEAD), and
# umoci writes gzip without a timestamp, so the same binary and commit give the same digest.
# Prints "digest sha256:…" (the manifest digest) and "sha256 …" (the binary's).
#
# Built with umoci (Debian package `umoci`, installed when missing); checked with skopeo.
# Environment: SOURCE_DATE_EPOCH, IMAGE_SOURCE (the `source` annotation; default: the git
# remote `origin`, else the crate name), IMAGE_NAME (binary name in the image; default: the
# file name of BINARY).
set -euo pipefail

die() { echo "oci-image.sh: $*" >&2; exit 1; }
(($# == 2)) || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ -f "$1" && -x "$1" ]] || die "$1: not an executable file"
binary="$(realpath "$1")"
mkdir -p "$(dirname "$2")"
layout="$(realpath -m "$2")"

need() {
    local tool="$1" package="$2" sudo=""
    command -v "${tool}" >/dev/null && return
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    command -v apt-get >/dev/null || die "${tool} not found: install ${package}"
    echo "${tool} not found: installing the Debian package ${package}" >&2
    { ${sudo} apt-get install -y --no-install-recommends "${package}" ||
        { ${sudo} apt-get update && ${sudo} apt-get install -y --no-install-recommends "${package}"; }; } >&2 ||
        die "could not install ${package}; run: sudo apt-get install -y ${package}"
}
need umoci umoci

cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${IMAGE_NAME:-$(basename "${binary}")}"
version="$("${binary}" --version)"
[[ "${version}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || die "${binary} --version printed '${version}'"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@${epoch}" +%Y-%m-%dT%H:%M:%SZ)"
source_url="${IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo "${name}")}"
licenses="$(sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/oci-image.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
image="${work}/layout:${version}"
umoci init --layout "${work}/layout"
umoci new --image "${image}"
umoci unpack --rootless --image "${image}" "${work}/bundle" >/dev/null
# The root directory keeps the mtime unpack gave it, so that the layer holds the binary only
# (no `./` entry); the binary gets the fixed time.
touch -r "${work}/bundle/rootfs" "${work}/root-mtime"
cp "${binary}" "${work}/bundle/rootfs/${name}"
chmod 0755 "${work}/bundle/rootfs/${name}"
touch -d "@${epoch}" "${work}/bundle/rootfs/${name}"
touch -r "${work}/root-mtime" "${work}/bundle/rootfs"
umoci repack --image "${image}" --history.created "${created}" \
    --history.created_by "scripts/oci-image.sh (${name} ${version})" "${work}/bundle"
labels=(
    "org.opencontainers.image.source=${source_url}"
    "org.opencontainers.image.version=${version}"
    "org.opencontainers.image.revision=${revision}"
    "org.opencontainers.image.licenses=${licenses}"
)
args=()
for label in "${labels[@]}"; do args+=(--config.label "${label}" --manifest.annotation "${label}"); done
umoci config --image "${image}" --no-history --created "${created}" --author "" \
    --os linux --architecture amd64 --config.entrypoint "/${name}" "${args[@]}"
umoci gc --layout "${work}/layout"

rm -rf "${layout}.new"
mv "${work}/layout" "${layout}.new"
rm -rf "${layout}"
mv "${layout}.new" "${layout}"
digest="$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "${layout}/index.json")"
echo "image ${layout}:${version}"
echo "digest ${digest}"
echo "sha256 $(sha256sum "${binary}" | cut -d' ' -f1)"
