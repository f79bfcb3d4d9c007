#!/usr/bin/env bash
# The aloft demo: start `aloft server` on the embedded default (SQLite store,
# three local clouds, in-process gateway), deploy the example completions
# service across the three clouds, send it real requests through the gateway,
# and print the status table. Ports and data dir can be overridden:
#   API=127.0.0.1:7070 GATEWAY=127.0.0.1:8080 DATA=.aloft/demo KEEP=1 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
API=${API:-127.0.0.1:7070}
GATEWAY=${GATEWAY:-127.0.0.1:8080}
DATA=${DATA:-$PWD/.aloft/demo}
BIN=$PWD/bin
export PATH="$BIN:$PATH" ALOFT_SERVER="http://$API"

echo "==> building aloft and the example service"
go build -o "$BIN/aloft" ./cmd/aloft
go build -o "$BIN/aloft-completions" ./examples/completions

rm -rf "$DATA" "$DATA.secrets.key"; mkdir -p "$DATA"
echo "==> starting aloft server (data $DATA, API $API, gateway $GATEWAY)"
aloft server --data "$DATA" --listen "$API" --gateway-listen "$GATEWAY" \
  --secrets-key-file "$DATA.secrets.key" >"$DATA/server.log" 2>&1 &
SERVER=$!
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    aloft delete completions --wait --timeout 60s >/dev/null 2>&1 || true
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  else
    echo "==> server left running (pid $SERVER); stop it with: kill $SERVER"
  fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://$API/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$DATA/server.log"; exit 1; }
  sleep 0.1
done

# The first start made an admin token; the CLI takes it from ALOFT_TOKEN.
export ALOFT_TOKEN="$(cat "$DATA/admin.token")"
echo "==> aloft whoami"
aloft whoami

echo "==> clouds"
aloft clouds

echo "==> aloft apply -f examples/completions/aloft.yaml --wait"
aloft apply -f examples/completions/aloft.yaml --wait --timeout 120s >/dev/null

echo "==> 6 completions through the gateway (Host: completions.localhost)"
for i in 1 2 3 4 5 6; do
  curl -sS -D "$DATA/h" -H 'Host: completions.localhost' "http://$GATEWAY/v1/completions" \
    -H 'Content-Type: application/json' \
    -d '{"prompt":"Alice was beginning to","max_tokens":12,"temperature":0.8,"seed":'$i'}' -o "$DATA/body"
  printf '  %-28s %s\n' "$(grep -i '^x-replica-id' "$DATA/h" | tr -d '\r' | cut -d' ' -f2)" \
    "$(sed -e 's/.*"text": *"\([^"]*\)".*/\1/' "$DATA/body" | head -c 90)"
done

echo "==> a streamed completion (server-sent events), tokens as they arrive"
curl -sSN -H 'X-Aloft-Deployment: completions' "http://$GATEWAY/v1/completions" \
  -d '{"prompt":"The Queen said","max_tokens":24,"stream":true}' |
  sed -u -n -e 's/^data: \[DONE\]/ [DONE]/p' -e 's/^data: .*"text":"\([^"]*\)".*/\1/p' | tr -d '\n'
echo

echo "==> status"
aloft get completions
