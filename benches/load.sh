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
STATE="$STATE_DIR/keypin"
PIN="24681357"
mkdir -p "$STATE"
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"

log() { printf '[load.sh] %s\n' "$*" >&2; }

log "building keypin (release)"
(cd "$ROOT" && cargo build --release --locked --quiet)
KEYPIN="$ROOT/target/release/keypin"
KEY="$("$KEYPIN" gen-key)"
printf '"secret-%s" = "benchuser:benchpass"\n' "$PIN" > "$STATE/secrets.toml"
chmod 600 "$STATE/secrets.toml"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS/run.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$PEERS/run.sh" start
# Its admin listener is on KEYPIN_PORT + 1000 (19447 by default).
keypin_start keypin "$KEYPIN" "$KEYPIN_PORT"
KEYPIN_PID=$PID_keypin

# Sign in once through the real form, as a browser would.
status=$(keypin_sign_in "$KEYPIN_PORT" "$STATE/cookies.txt")
[[ "$status" == 303 ]] || { log "sign-in failed ($status)"; exit 1; }
session=$(keypin_session "$STATE/cookies.txt")
[[ -n "$session" ]] || { log "no session cookie"; exit 1; }

# One Cookie header for every target: the peers check gw_session, keypin its own.
export COOKIE="$SESSION_COOKIE_NAME=$SESSION_TOKEN; __Host-keypin=$session"
"$PEERS/compare.sh" \
    nginx-tls="https://127.0.0.1:$NGINX_PORT/" \
    keypin="https://127.0.0.1:$KEYPIN_PORT/" \
    haproxy-tls="https://127.0.0.1:$HAPROXY_PORT/" \
    "$@"
log "keypin RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$KEYPIN_PID/status)"
