# Sourced by benches/load.sh, ab.sh, forward_auth.sh and instructions.sh: start
# keypin on the bench job (a file secret for the bench user, the route to the
# bench upstream), sign in through the real form, and the pinned mode. Needs
# bench.env's UP_PORT and STATE_DIR, and STATE and KEY.

# keypin_build: sets KEYPIN to the build under test: KEYPIN_BIN if set, else
# the PROFILE build: `pgo` (the default, as shipped: benches/pgo.sh) or a cargo
# profile (`dist`, `release`). Needs ROOT and HERE.
keypin_build() {
    local profile=${PROFILE:-pgo}
    if [[ -n "${KEYPIN_BIN:-}" ]]; then
        KEYPIN="$KEYPIN_BIN"   # another build, e.g. the one before a change
    elif [[ $profile == pgo ]]; then
        KEYPIN=$("$HERE/pgo.sh")
    else
        echo "building keypin (profile $profile)" >&2
        (cd "$ROOT" && cargo build --profile "$profile" --locked --quiet)
        KEYPIN="$ROOT/target/$profile/keypin"
    fi
}

# keypin_stop_all: the exit trap of a script that starts keypins (their PIDs in
# the array `pids`) and the peers: stops both. Needs PEERS.
keypin_stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS/run.sh" stop >/dev/null 2>&1 || true
}

# The bench user's PIN; keypin_secrets writes its secret.
BENCH_PIN=24681357

# keypin_secrets: the file secret of the bench user, in $STATE/secrets.toml.
keypin_secrets() {
    printf '"secret-%s" = "benchuser:benchpass"\n' "$BENCH_PIN" > "$STATE/secrets.toml"
    chmod 600 "$STATE/secrets.toml"
}

# Pinned mode (PIN=1, 2 CPUs): each proxy on CPU 0 with one worker, the bench
# upstream and the load generator on CPU 1; 5 rounds of 4 s unless set; the
# targets not measured, and caddy, stopped during each run, and the order of the
# targets turned by one each round (compare.sh's PAUSE and ROTATE).
if [[ "${PIN:-0}" == 1 ]]; then
    (( $(nproc) >= 2 )) || { echo "PIN=1 needs 2 CPUs" >&2; exit 2; }
    export WORKERS=1 UP_WORKERS=1 LG_CPUS=1 PAUSE="${PAUSE:-1}" ROTATE="${ROTATE:-1}"
    export ROUNDS="${ROUNDS:-5}" DURATION="${DURATION:-4}" MAX_TOTAL="${MAX_TOTAL:-200}"
fi

# peer_pids NAME: the processes serving a peer of benches/peers (its recorded PID
# and its children, nginx's workers), space-separated.
peer_pids() {
    local pid
    pid=$(awk -v n="$1" '$1==n {p=$2} END {print p}' "$STATE_DIR/pids")
    # shellcheck disable=SC2046
    echo "$pid" $(pgrep -P "$pid")
}

# pin_to CPU PID...: every thread of each process on CPU.
pin_to() {
    local cpu=$1 pid; shift
    for pid in "$@"; do taskset -a -p -c "$cpu" "$pid" >/dev/null; done
}

# keypin_start NAME BINARY PORT [SERVER_TOML] [TAIL_TOML]: sets PID_<NAME>.
keypin_start() {
    cat > "$STATE/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$3"
admin_listen = "127.0.0.1:$(( $3 + 1000 ))"
tls_cert = "$STATE/keypin.pem"
tls_key = "$STATE/keypin-key.pem"
self_signed = true
${4:-}
[secrets]
backend = "file"
path = "$STATE/secrets.toml"
[[route]]
name = "bench"
upstream = "http://127.0.0.1:$UP_PORT"
inject = "basic"
${5:-}
TOML
    KEYPIN_SESSION_KEYS="$KEY" RUST_LOG=warn "$2" serve --config "$STATE/$1.toml" \
        --audit-log "$STATE/$1-audit.log" > "$STATE/$1.log" 2>&1 &
    pids+=($!)
    eval "PID_$1=$!"
    for _ in $(seq 1 100); do curl -sk -o /dev/null "https://127.0.0.1:$3/" && break; sleep 0.1; done
}

# keypin_sign_in PORT JAR [XFF]: sign in with BENCH_PIN through the form; prints the
# POST's status (303 on success).
keypin_sign_in() {
    local form csrf
    rm -f "$2"
    form=$(curl -sk -c "$2" -b "$2" "https://127.0.0.1:$1/.keypin/login")
    csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$form" | head -1)
    curl -sk -o /dev/null -w '%{http_code}' -c "$2" -b "$2" -H "X-Forwarded-For: ${3:-192.0.2.1}" \
        -H "Origin: https://127.0.0.1:$1" --data-urlencode "pin=$BENCH_PIN" --data-urlencode "csrf=$csrf" \
        "https://127.0.0.1:$1/.keypin/login"
}

# keypin_session JAR: the session cookie's value in a curl cookie jar.
keypin_session() {
    awk '$6=="__Host-keypin" {print $7}' "$1"
}
