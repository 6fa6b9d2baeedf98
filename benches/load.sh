#!/usr/bin/env bash
# keypin against nginx, haproxy and caddy at the same job, on loopback: TLS, a
# session-cookie check, Basic Authorization injected, keep-alive to one upstream.
# Builds release, starts the peers (benches/peers) and keypin with a bench config
# whose route points at the bench upstream (127.0.0.1:18080) and a file secret for
# the bench user, signs in once through the real form, then runs compare.sh with
# both cookies, interleaved, and prints the ratio table. Bounded in time, loopback
# only; stops what it started.
#
#   benches/load.sh                 # DURATION=5 ROUNDS=3 CONNS=32 by default
#   DURATION=10 ROUNDS=5 benches/load.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
KEYPIN_PORT="${KEYPIN_PORT:-18447}"
KEYPIN_ADMIN_PORT="${KEYPIN_ADMIN_PORT:-19447}"
STATE="$STATE_DIR/keypin"
BENCH_PIN="24681357"
mkdir -p "$STATE"

log() { printf '[load.sh] %s\n' "$*" >&2; }

log "building keypin (release)"
(cd "$ROOT" && cargo build --release --locked --quiet)
KEYPIN="$ROOT/target/release/keypin"

printf '"secret-%s" = "benchuser:benchpass"\n' "$BENCH_PIN" > "$STATE/secrets.toml"
chmod 600 "$STATE/secrets.toml"
cat > "$STATE/keypin.toml" <<TOML
[server]
listen = "127.0.0.1:$KEYPIN_PORT"
admin_listen = "127.0.0.1:$KEYPIN_ADMIN_PORT"
tls_cert = "$STATE/keypin.pem"
tls_key = "$STATE/keypin-key.pem"
self_signed = true
[secrets]
backend = "file"
path = "$STATE/secrets.toml"
[[route]]
name = "bench"
upstream = "http://127.0.0.1:$UP_PORT"
inject = "basic"
TOML

KEYPIN_PID=""
cleanup() {
    [[ -n "$KEYPIN_PID" ]] && kill "$KEYPIN_PID" 2>/dev/null && wait "$KEYPIN_PID" 2>/dev/null
    "$PEERS/run.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$PEERS/run.sh" start
KEYPIN_SESSION_KEYS="$("$KEYPIN" gen-key)" RUST_LOG="warn" \
    "$KEYPIN" serve --config "$STATE/keypin.toml" --log-format json --audit-log "$STATE/audit.log" \
    > "$STATE/keypin.log" 2>&1 &
KEYPIN_PID=$!
for _ in $(seq 1 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$KEYPIN_PORT/" && break
    sleep 0.1
done

# Sign in once through the real form, as a browser would.
jar="$STATE/cookies.txt"
rm -f "$jar"
form=$(curl -sk -c "$jar" -b "$jar" "https://127.0.0.1:$KEYPIN_PORT/.keypin/login")
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$form" | head -1)
status=$(curl -sk -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
    -H "Origin: https://127.0.0.1:$KEYPIN_PORT" \
    --data-urlencode "pin=$BENCH_PIN" --data-urlencode "csrf=$csrf" \
    "https://127.0.0.1:$KEYPIN_PORT/.keypin/login")
[[ "$status" == 303 ]] || { log "sign-in failed ($status)"; exit 1; }
session=$(awk '$6=="__Host-keypin" {print $7}' "$jar")
[[ -n "$session" ]] || { log "no session cookie"; exit 1; }

# One Cookie header for every target: the peers check gw_session, keypin its own.
export COOKIE="$SESSION_COOKIE_NAME=$SESSION_TOKEN; __Host-keypin=$session"
"$PEERS/compare.sh" \
    nginx-tls="https://127.0.0.1:$NGINX_PORT/" \
    keypin="https://127.0.0.1:$KEYPIN_PORT/" \
    haproxy-tls="https://127.0.0.1:$HAPROXY_PORT/" \
    "$@"
log "keypin RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$KEYPIN_PID/status)"
