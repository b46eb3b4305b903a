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
# shellcheck source=scripts/lib/reads.sh
. scripts/lib/reads.sh
reads_build
work=$(mktemp -d /tmp/qlik-syscalls.XXXXXX)
trap 'reads_cleanup; rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
cp "$BIN/examples/null_plugin" "$BIN/vault-plugin-secrets-qlik" "$work/plugins/"
reads_start
"$BAO" secrets enable -path=null null_plugin >/dev/null
reads_shaped null
"$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n 200 --warmup 50 \
  null=GET:/v1/null/value shaped=GET:/v1/null/shaped config=GET:/v1/qlik/config > /dev/null
NULL=$(reads_child "$work/plugins/null_plugin"); ENGINE=$(reads_child "$work/plugins/vault-plugin-secrets-qlik")
[ -n "$NULL" ] && [ -n "$ENGINE" ] || { echo "plugin processes not found" >&2; exit 1; }
echo "config answer: $(wc -c < "$work/config_body.json") bytes; $N reads of each, one type at a time"
per_read() { awk -v n="$N" 'NR>2 && $NF!="total" && $4+0>0 {printf "    %-14s %.2f\n", $NF, $4/n}' "$1" | sort -k2 -rn | head -8; }
for what in null shaped config; do
  case $what in
    null) P=$NULL; U=/v1/null/value ;;
    shaped) P=$NULL; U=/v1/null/shaped ;;
    config) P=$ENGINE; U=/v1/qlik/config ;;
  esac
  strace -f -c -p "$P" -o "$work/plugin.$what" 2>/dev/null & SP=$!
  strace -f -c -p "$SERVER_PID" -o "$work/server.$what" 2>/dev/null & SS=$!
  sleep 1
  "$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 0 "$what=GET:$U" > /dev/null
  kill -INT "$SP" "$SS"; wait "$SP" "$SS" 2>/dev/null || true
  echo "== $what: system calls per read"
  echo "  plugin:"; per_read "$work/plugin.$what"
  echo "  server:"; per_read "$work/server.$what"
done
