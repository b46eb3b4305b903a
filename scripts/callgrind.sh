#!/usr/bin/env bash
# Instructions per read in the plugin process, under callgrind: the engine's `config` read
# against the null plugin's (examples/null_plugin.rs), the transport's floor, and against the
# null plugin answering the engine's own `config` answer from memory (a second process of it,
# `null_shaped`): the same answer with none of the engine's work.
#
#   scripts/callgrind.sh [--n 500] [--keep DIR]
#
# Instruction counts do not move with the machine's load, unlike times: use this to see what a
# change to the request path costs. Builds both with the `bench-client` profile (the release
# profile without LTO, symbols kept), wraps each in `valgrind --tool=callgrind
# --instr-atstart=no` inside a `bao server -dev` plugin directory, configures the engine
# against fake-qlik, warms up, switches instrumentation on, sends N interleaved reads of each,
# dumps, and prints instructions per read and the ratio (JSON on the last line). --keep DIR
# keeps the callgrind files for `callgrind_annotate`. Needs valgrind (apt-get install
# valgrind). Everything it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=500 KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
# shellcheck source=scripts/lib/reads.sh
. scripts/lib/reads.sh
reads_build
work=$(mktemp -d /tmp/qlik-callgrind.XXXXXX)
trap 'reads_cleanup; rm -rf "$work"' EXIT
OUT=${KEEP:-$work/out}
mkdir -p "$work/plugins" "$work/real" "$OUT"
cp "$BIN/vault-plugin-secrets-qlik" "$BIN/examples/null_plugin" "$work/real/"
for f in vault-plugin-secrets-qlik null_plugin null_shaped; do
  real=$f; [ "$f" = null_shaped ] && real=null_plugin
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --log-file=%s/%s.log.%%p --callgrind-out-file=%s/%s.cg.%%p %s/real/%s "$@"\n' \
    "$OUT" "$f" "$OUT" "$f" "$work" "$real" > "$work/plugins/$f"
  chmod +x "$work/plugins/$f"
done
# TMPDIR: the plugins' valgrind and callgrind_control below meet in it.
export TMPDIR=$work
reads_start
"$BAO" secrets enable -path=null null_plugin >/dev/null
"$BAO" secrets enable -path=shaped null_shaped >/dev/null
reads_shaped shaped
READS=(config=GET:/v1/qlik/config null=GET:/v1/null/value shaped=GET:/v1/shaped/shaped)
"$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n 50 --warmup 50 "${READS[@]}" > /dev/null
ENGINE=$(reads_child /vault-plugin-secrets-qlik.cg); NULL=$(reads_child /null_plugin.cg)
SHAPED=$(reads_child /null_shaped.cg)
[ -n "$ENGINE" ] && [ -n "$NULL" ] && [ -n "$SHAPED" ] || { echo "plugin processes not found" >&2; exit 1; }
for p in "$ENGINE" "$NULL" "$SHAPED"; do callgrind_control -i on "$p" >/dev/null 2>&1; done
"$BIN/examples/bench_client" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 0 "${READS[@]}" > "$work/http.json"
for p in "$ENGINE" "$NULL" "$SHAPED"; do callgrind_control -d "$p" >/dev/null 2>&1; done
total() { for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done; awk '/^summary:/{print $2}' "$1"; }
E=$(total "$OUT/vault-plugin-secrets-qlik.cg.$ENGINE.1"); NP=$(total "$OUT/null_plugin.cg.$NULL.1")
S=$(total "$OUT/null_shaped.cg.$SHAPED.1")
python3 - "$E" "$NP" "$N" "$OUT" "$ENGINE" "$NULL" "$S" "$SHAPED" <<'PY'
import json, sys
e, n, reads, s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[7])
res = {"reads": reads, "engine_config_instructions_per_read": round(e / reads),
       "null_instructions_per_read": round(n / reads), "ratio": round(e / n, 3),
       "null_shaped_instructions_per_read": round(s / reads), "ratio_vs_shaped": round(e / s, 3)}
print(f"instructions per read: engine config {res['engine_config_instructions_per_read']:,}, "
      f"null plugin {res['null_instructions_per_read']:,}: {res['ratio']}x; "
      f"null plugin answering config's answer {res['null_shaped_instructions_per_read']:,}: "
      f"{res['ratio_vs_shaped']}x")
print(f"files: {sys.argv[4]}/vault-plugin-secrets-qlik.cg.{sys.argv[5]}.1, {sys.argv[4]}/null_plugin.cg.{sys.argv[6]}.1, "
      f"{sys.argv[4]}/null_shaped.cg.{sys.argv[8]}.1")
print(json.dumps(res))
PY
