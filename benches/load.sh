#!/usr/bin/env bash
# keypin against nginx, haproxy and caddy at the same job, on loopback: TLS, a
# session-cookie check, Basic Authorization injected, keep-alive to one upstream.
# Builds keypin as shipped (benches/pgo.sh: the dist profile, fat LTO, with PGO), starts the peers (benches/peers) and keypin with a bench config
# whose route points at the bench upstream (127.0.0.1:18080) and a file secret for
# the bench user, signs in once through the real form, then runs compare.sh with
# both cookies, interleaved, and prints the ratio table with each proxy's CPU
# microseconds per request (its processes' user+system time / requests), the
# figure of merit. Bounded in time, loopback only; stops what it started.
#
#   benches/load.sh                 # DURATION=5 ROUNDS=3 CONNS=32 by default
#   DURATION=10 ROUNDS=5 benches/load.sh
#   PIN=1 benches/load.sh           # pinned: every proxy on CPU 0 with one worker,
#                                   # the upstream and wrk on CPU 1 (2-core host);
#                                   # ROUNDS=5 DURATION=4 unless set
#   PROFILE=dist PIN=1 benches/load.sh   # keypin built with a cargo profile (dist, release), no PGO
#   LG=h2load PIN=1 benches/load.sh      # HTTP/2: h2load, STREAMS=10 per connection
#   LG=h2load H1=1 RATE=60000 PIN=1 benches/load.sh   # HTTP/1.1 at a fixed offered
#                                   # load (60,000 requests/s for every proxy): the
#                                   # latency percentiles at the same load
#   KEYPIN_BIN=/tmp/old/keypin PIN=1 benches/load.sh   # a given binary, not built here
#   MODE=syscalls PIN=1 benches/load.sh  # instead of the comparison: per request,
#                                   # each proxy's system calls (strace -c over a
#                                   # 3 s run), user and system CPU, context switches
#   MODE=timeline PIN=1 benches/load.sh  # instead of the comparison: at a fixed load
#                                   # (RATE, 15,000/s by default), the order in which
#                                   # each proxy carries a burst's requests (perf
#                                   # record of its reads and writes; benches/timeline.sh)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
KEYPIN_PORT="${KEYPIN_PORT:-18447}"
STATE="$STATE_DIR/keypin"
mkdir -p "$STATE"
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"

log() { printf '[load.sh] %s\n' "$*" >&2; }

keypin_build
KEY="$("$KEYPIN" gen-key)"
keypin_secrets

pids=()
trap keypin_stop_all EXIT

"$PEERS/run.sh" start
# Its admin listener is on KEYPIN_PORT + 1000 (19447 by default).
keypin_start keypin "$KEYPIN" "$KEYPIN_PORT" "workers = ${WORKERS:-2}"
KEYPIN_PID=$PID_keypin

# The processes serving each target, so compare.sh can charge each its own CPU.
nginx_pids=$(peer_pids nginx); haproxy_pids=$(peer_pids haproxy)
export TARGET_PIDS="nginx-tls=${nginx_pids// /,} keypin=$KEYPIN_PID haproxy-tls=${haproxy_pids// /,}"
if [[ "${PIN:-0}" == 1 ]]; then
    # shellcheck disable=SC2086
    pin_to 0 $nginx_pids $haproxy_pids "$KEYPIN_PID"
    # shellcheck disable=SC2046
    pin_to 1 $(peer_pids upstream)
    PAUSE_PIDS=$(peer_pids caddy); export PAUSE_PIDS   # started by run.sh, not measured here
    log "pinned: proxies on CPU 0 (one worker each), upstream and wrk on CPU 1"
fi

# Sign in once through the real form, as a browser would.
status=$(keypin_sign_in "$KEYPIN_PORT" "$STATE/cookies.txt")
[[ "$status" == 303 ]] || { log "sign-in failed ($status)"; exit 1; }
session=$(keypin_session "$STATE/cookies.txt")
[[ -n "$session" ]] || { log "no session cookie"; exit 1; }

# One Cookie header for every target: the peers check gw_session, keypin its own.
export COOKIE="$SESSION_COOKIE_NAME=$SESSION_TOKEN; __Host-keypin=$session"
each=""
case "${MODE:-compare}" in
    syscalls) . "$HERE/syscalls.sh"; each=per_request ;;
    timeline) . "$HERE/timeline.sh"; each=timeline ;;
esac
if [[ -n $each ]]; then
    # shellcheck disable=SC2086 # the PID lists split into arguments
    {
        $each nginx-tls "https://127.0.0.1:$NGINX_PORT/" $nginx_pids
        $each keypin "https://127.0.0.1:$KEYPIN_PORT/" "$KEYPIN_PID"
        $each haproxy-tls "https://127.0.0.1:$HAPROXY_PORT/" $haproxy_pids
    }
    exit 0
fi
"$PEERS/compare.sh" \
    nginx-tls="https://127.0.0.1:$NGINX_PORT/" \
    keypin="https://127.0.0.1:$KEYPIN_PORT/" \
    haproxy-tls="https://127.0.0.1:$HAPROXY_PORT/" \
    "$@"
log "keypin RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$KEYPIN_PID/status)"
