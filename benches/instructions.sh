#!/usr/bin/env bash
# Instructions keypin executes per proxied request, counted by callgrind: the
# same for the same binary and job however busy the host is, so a change's
# effect shows where CPU timings drown in noise. The bench job (TLS, session
# cookie, Basic auth injected, keep-alive upstream) on one worker: 500 requests
# of warm-up, then 5,000 on 8 connections with h2load, counted. Loopback only,
# bounded, stops what it started. Needs valgrind and h2load (nghttp2-client).
#
#   benches/instructions.sh [path/to/keypin]      # default target/pgo/keypin (benches/pgo.sh)
#   H2=1 benches/instructions.sh                  # HTTP/2, 10 streams a connection
#
# Prints the instructions per request; the callgrind file stays in
# $STATE_DIR/keypin/callgrind.out.* for callgrind_annotate.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
WORKERS=1
BIN="$(realpath "${1:-$ROOT/target/pgo/keypin}")"
STATE="$STATE_DIR/keypin"
PORT=18447
REQUESTS=5000
mkdir -p "$STATE"
rm -f "$STATE"/callgrind.out.*
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"
KEY="$("$BIN" gen-key)"
keypin_secrets
h1=(--h1)
[[ "${H2:-0}" == 1 ]] && h1=(-m 10)

wrapper="$STATE/under-callgrind"
printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/callgrind.out.%%p --dump-instr=no %s "$@"\n' \
    "$STATE" "$BIN" > "$wrapper"
chmod +x "$wrapper"

pids=()
trap keypin_stop_all EXIT
"$PEERS/run.sh" start >/dev/null
keypin_start keypin "$wrapper" "$PORT" "workers = $WORKERS"
keypin_sign_in "$PORT" "$STATE/cookies.txt" >/dev/null
cookie="cookie: __Host-keypin=$(keypin_session "$STATE/cookies.txt")"

timeout 300 h2load "${h1[@]}" -n 500 -c 8 -H "$cookie" "https://127.0.0.1:$PORT/" >/dev/null
callgrind_control -z "$PID_keypin" >/dev/null 2>&1
timeout 300 h2load "${h1[@]}" -n "$REQUESTS" -c 8 -H "$cookie" "https://127.0.0.1:$PORT/" | grep -E '^requests:'
callgrind_control -d "$PID_keypin" >/dev/null 2>&1
sleep 1
dump=$(ls -t "$STATE"/callgrind.out.*.* | head -1)
callgrind_annotate "$dump" 2>/dev/null |
    awk -v n="$REQUESTS" -v dump="$dump" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "instructions per request: %.0f (%s)\n", $1 / n, dump }'
