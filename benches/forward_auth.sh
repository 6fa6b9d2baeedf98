#!/usr/bin/env bash
# Forward-auth against proxying, on the bench job (TLS, session cookie, Basic
# auth injected, keep-alive to the bench upstream): nginx in front running the
# shipped deploy/ingress/nginx.conf and asking keypin's plain listener
# (`auth_request`), keypin proxying by itself, and nginx alone (the peers'
# nginx-tls: cookie compared, Basic injected). Interleaved by compare.sh; prints
# req/s ratios and each keypin's CPU per request (its /proc ticks / its
# requests): the auth answer has no upstream hop. Loopback only, bounded,
# stops what it started.
#
#   benches/forward_auth.sh            # compare.sh's ROUNDS, DURATION, CONNS
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"
STATE="$STATE_DIR/forward-auth"; mkdir -p "$STATE"
FRONT_PORT=18449 PROXY_PORT=18450 AUTH_PLAIN=18451
keypin_build
keypin_secrets
KEY="$("$KEYPIN" gen-key)"
pids=()
trap keypin_stop_all EXIT
"$PEERS/run.sh" start >/dev/null

keypin_start proxy "$KEYPIN" "$PROXY_PORT" "workers = 2"
keypin_start auth "$KEYPIN" $(( PROXY_PORT + 10 )) "workers = 2
plain_listen = \"127.0.0.1:$AUTH_PLAIN\"
trusted_proxies = [\"127.0.0.1\"]"

# nginx in front, with the shipped example rendered for these ports.
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$FRONT_PORT ssl;|" \
    -e "s|/etc/nginx/tls/app.example.com.crt|$STATE/keypin.pem|" \
    -e "s|/etc/nginx/tls/app.example.com.key|$STATE/keypin-key.pem|" \
    -e "s|server 127.0.0.1:8081;|server 127.0.0.1:$AUTH_PLAIN;|" \
    -e "s|server 127.0.0.1:8080;|server 127.0.0.1:$UP_PORT;|" \
    "$ROOT/deploy/ingress/nginx.conf" > "$STATE/site.conf"
cat > "$STATE/nginx.conf" <<NGINX
daemon off;
worker_processes $WORKERS;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $STATE/body; proxy_temp_path $STATE/proxy;
  fastcgi_temp_path $STATE/fcgi; uwsgi_temp_path $STATE/uwsgi; scgi_temp_path $STATE/scgi;
  include $STATE/site.conf;
}
NGINX
nginx -p "$STATE" -e "$STATE/nginx-error.log" -c "$STATE/nginx.conf" &
pids+=($!)
for _ in $(seq 1 100); do curl -sk -o /dev/null "https://127.0.0.1:$FRONT_PORT/" && break; sleep 0.1; done

# Sign in once (through the proxying keypin; the cookie opens on both).
keypin_sign_in "$PROXY_PORT" "$STATE/jar" >/dev/null
export COOKIE="$SESSION_COOKIE_NAME=$SESSION_TOKEN; __Host-keypin=$(keypin_session "$STATE/jar")"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
p0=$(ticks "$PID_proxy"); a0=$(ticks "$PID_auth")
OUT="$STATE/results" "$PEERS/compare.sh" \
    nginx-alone="https://127.0.0.1:$NGINX_PORT/" \
    keypin-proxy="https://127.0.0.1:$PROXY_PORT/" \
    nginx-keypin-auth="https://127.0.0.1:$FRONT_PORT/" | tee "$STATE/out.txt"
p1=$(ticks "$PID_proxy"); a1=$(ticks "$PID_auth")
raw=$(grep -o 'raw: [^ )]*' "$STATE/out.txt" | cut -d' ' -f2)
read -r rp ra < <(awk -F'\t' -v d="${DURATION:-5}" '$2=="keypin-proxy"{p+=$3*d} $2=="nginx-keypin-auth"{a+=$3*d} END{print p, a}' "$raw")
awk -v p=$((p1 - p0)) -v a=$((a1 - a0)) -v rp="$rp" -v ra="$ra" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "keypin CPU per request: proxying %.1f us, answering auth %.1f us (auth/proxy %.2f)\n",
        p*1e6/hz/rp, a*1e6/hz/ra, (a/ra)/(p/rp) }'
