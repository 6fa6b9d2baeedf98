#!/usr/bin/env bash
# keypin against keypin: two builds, or one build under two configurations, up at
# once with one session key, measured by benches/peers/compare.sh (interleaved
# rounds) on the bench job (TLS, session cookie, Basic auth injected, keep-alive
# upstream). Prints req/s ratios, the CPU per request of each side (compare.sh's
# cpu_us/req: the process's /proc ticks over each run / its requests), and the time of 20
# sequential sign-ins (form GET + POST) on each side. Loopback only, bounded,
# stops what it started.
#
#   A_BIN=/path/old/keypin B_BIN=target/pgo/keypin benches/ab.sh
#   B_TOML='[limits]
#   store = "redis://127.0.0.1:6391/"' REDIS_PORT=6391 benches/ab.sh
#
# Env: A_BIN, B_BIN (default target/pgo/keypin: benches/pgo.sh, as shipped), A_TOML, B_TOML (TOML
# appended to each side's config), REDIS_PORT (start a redis-server there),
# PIN=1 (both sides on CPU 0 with one worker, the upstream and the load generator
# on CPU 1, as benches/load.sh's pinned mode), WITH_NGINX=1 (nginx's TLS proxy
# measured in the same interleaved rounds, first, so the ratios are against it:
# both builds against nginx at once), plus compare.sh's ROUNDS, DURATION, CONNS, LG.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"
if [[ -z "${A_BIN:-}" || -z "${B_BIN:-}" ]]; then keypin_build; fi
A_BIN="${A_BIN:-$KEYPIN}"
B_BIN="${B_BIN:-$KEYPIN}"
STATE="$STATE_DIR/ab"; mkdir -p "$STATE"
keypin_secrets
KEY="$("$B_BIN" gen-key)"
pids=()
cleanup() {
    keypin_stop_all
    [[ -z "${REDIS_PORT:-}" ]] || redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [[ -n "${REDIS_PORT:-}" ]]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
fi
"$PEERS/run.sh" start >/dev/null
keypin_start a "$A_BIN" 18447 "workers = ${WORKERS:-2}" "${A_TOML:-}"
keypin_start b "$B_BIN" 18448 "workers = ${WORKERS:-2}" "${B_TOML:-}"
export TARGET_PIDS="a=$PID_a b=$PID_b"
targets=(a=https://127.0.0.1:18447/ b=https://127.0.0.1:18448/)
nginx_pids=""
if [[ "${WITH_NGINX:-0}" == 1 ]]; then
    nginx_pids=$(peer_pids nginx)
    TARGET_PIDS="nginx-tls=${nginx_pids// /,} $TARGET_PIDS"
    targets=(nginx-tls="https://127.0.0.1:$NGINX_PORT/" "${targets[@]}")
fi
if [[ "${PIN:-0}" == 1 ]]; then
    # shellcheck disable=SC2086 # the PID list splits into arguments
    pin_to 0 "$PID_a" "$PID_b" $nginx_pids
    # shellcheck disable=SC2046
    pin_to 1 $(peer_pids upstream)
    PAUSE_PIDS="$(peer_pids caddy) $(peer_pids haproxy)"; export PAUSE_PIDS   # started by run.sh, not measured here
fi
[[ "$(keypin_sign_in 18447 "$STATE/jar")" == 303 ]] || { echo "ab.sh: sign-in failed" >&2; exit 1; }
# One Cookie header for every target: nginx's peer checks gw_session, keypin its own.
export COOKIE="$SESSION_COOKIE_NAME=$SESSION_TOKEN; __Host-keypin=$(keypin_session "$STATE/jar")"

OUT="$STATE/results" "$PEERS/compare.sh" "${targets[@]}"
for side in a:18447 b:18448; do
    t0=$(date +%s%N)
    for i in $(seq 1 20); do keypin_sign_in "${side#*:}" "$STATE/j" "198.51.100.$i" >/dev/null; done
    echo "sign-in ${side%%:*}: $(( ($(date +%s%N) - t0) / 20000000 )) ms each (20 sequential)"
done
