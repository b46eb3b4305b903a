#!/usr/bin/env bash
# Builds the Go peers that scripts/bench.sh measures beside the Rust plugin (examples/go-peer/):
#
#   scripts/go-peer.sh OUTDIR
#
# writes OUTDIR/go_null_plugin and OUTDIR/go_config_plugin (stripped, static: CGO_ENABLED=0) and
# prints one JSON line of the versions used. Uses only Debian's packages (installed here with
# apt-get when missing): golang-go, golang-github-hashicorp-go-plugin-dev,
# golang-google-grpc-dev, golang-google-protobuf-dev, protobuf-compiler, protoc-gen-go and
# protoc-gen-go-grpc; builds offline in GOPATH mode against /usr/share/gocode, with Go code
# generated here from this repository's proto/ files (none is committed). Exits 3, saying why on
# stderr, when the packages cannot be had.
#
# What the peers are not: the OpenBao SDK (sdk/v2, go-plugin 1.8, Go 1.2x) is not packaged by
# Debian, so these are built on go-plugin 1.0.1 and grpc-go 1.33 with a hand-written dispatcher
# in the SDK's manner (multiplex id -> backend, JSON in and out). They lack the SDK framework's
# path regexes, field schema and OpenAPI, help, WAL, periodic functions, the storage and system
# view clients (never dialled: go-plugin 1.0.1's AutoMTLS client config lacks RootCAs and
# ServerName, so broker calls fail), logging through the host and the SDK's request
# bookkeeping. They are the floor a Go plugin cannot go under, not a measure of the SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/go-peer.sh OUTDIR}
PKGS=(golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev
      protobuf-compiler protoc-gen-go protoc-gen-go-grpc)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "go-peer: missing Debian packages ${missing[*]} and no apt-get as root to install them" >&2; exit 3
  fi
  echo "go-peer: installing ${missing[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 \
    || { echo "go-peer: apt-get install ${missing[*]} failed" >&2; exit 3; }
fi
GO=$(command -v go || echo /usr/lib/go/bin/go)
WORK=$(mktemp -d /tmp/go-peer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/src/qlikbench
mkdir -p "$SRC"/{pb,logical,multiplexing} "$OUT"
cp -r examples/go-peer/peer examples/go-peer/null examples/go-peer/config "$SRC/"
M="Mpb/backend.proto=qlikbench/pb,Mlogical/plugin.proto=qlikbench/logical,Mlogical/version.proto=qlikbench/logical,Mpluginutil/multiplexing.proto=qlikbench/multiplexing"
gen() {  # gen DIR PROTO...
  local dir=$1; shift
  protoc -I proto -I /usr/include --go_out="$dir" --go_opt=paths=source_relative,"$M" \
    --go-grpc_out="$dir" --go-grpc_opt=paths=source_relative,"$M" "$@"
}
mkdir -p "$WORK/gen"
gen "$WORK/gen" pb/backend.proto logical/plugin.proto logical/version.proto pluginutil/multiplexing.proto
cp "$WORK"/gen/pb/*.go "$SRC/pb/"; cp "$WORK"/gen/logical/*.go "$SRC/logical/"
cp "$WORK"/gen/pluginutil/*.go "$SRC/multiplexing/"
export GOPATH="$WORK:/usr/share/gocode" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="${GOCACHE:-$WORK/cache}"
( cd "$SRC" && "$GO" build -trimpath -ldflags='-s -w' -o "$OUT/go_null_plugin" ./null \
    && "$GO" build -trimpath -ldflags='-s -w' -o "$OUT/go_config_plugin" ./config )
ver() { dpkg-query -W -f='${Version}' "$1"; }
printf '{"go":"%s","debian":"%s","go_plugin":"%s","grpc_go":"%s","protobuf_go":"%s","protoc":"%s"}\n' \
  "$("$GO" env GOVERSION)" "$(cat /etc/debian_version 2>/dev/null || echo unknown)" \
  "$(ver golang-github-hashicorp-go-plugin-dev)" "$(ver golang-google-grpc-dev)" \
  "$(ver golang-google-protobuf-dev)" "$(protoc --version | awk '{print $2}')"
