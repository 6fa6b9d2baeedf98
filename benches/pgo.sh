#!/usr/bin/env bash
# The shipped build: cargo's `dist` profile (fat LTO, one codegen unit) with
# LLVM's profile-guided optimisation, trained on keypin's own job.
#   1. build keypin instrumented (-Cprofile-generate), in target/pgo/gen;
#   2. run it against the bench upstream (benches/peers: nginx on 127.0.0.1:18080):
#      sign-ins through the form with the right and a wrong PIN, HTTP/1.1
#      keep-alive load (wrk), new TLS connections, signed-out requests (the
#      redirect), forward-auth questions on the plain listener, HTTP/2 (h2load,
#      when installed); stop it with SIGTERM, so that it writes its profile;
#   3. merge the profile (llvm-profdata) and build again with -Cprofile-use.
# The result is target/pgo/keypin (its path is printed last); while no source
# file (src/, Cargo.toml, Cargo.lock, this script) is newer and rustc and
# RUSTFLAGS are the same, it is reused as is.
# Loopback only, bounded: TRAIN seconds (default 5) for each load.
#
#   benches/pgo.sh                 # what the Dockerfile and the benchmarks run
#   TRAIN=10 FRESH=1 benches/pgo.sh   # trained anew even when up to date
#
# Needs nginx, wrk, curl and openssl (run.sh installs nginx and wrk from Debian
# when missing), and an llvm-profdata that reads the profiles of rustc's LLVM:
# LLVM_PROFDATA if set, else rustup's (`rustup component add llvm-tools`), else
# the newest /usr/lib/llvm-*/bin/llvm-profdata (Debian's llvm-19 reads
# rustc 1.95's, LLVM 22).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PEERS="$HERE/peers"
# shellcheck source=peers/bench.env
. "$PEERS/bench.env"
# shellcheck source=keypin.sh
. "$HERE/keypin.sh"
KEYPIN_PORT="${KEYPIN_PORT:-18467}"
PLAIN_PORT="${PLAIN_PORT:-18468}"
TRAIN="${TRAIN:-5}"
STATE="$STATE_DIR/keypin-pgo"
OUT="$ROOT/target/pgo"
DATA="$OUT/profiles"
HOST=$(rustc -vV | sed -n 's/^host: //p')

log() { printf '[pgo.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

profdata_tool() {
    if [[ -n "${LLVM_PROFDATA:-}" ]]; then echo "$LLVM_PROFDATA"; return; fi
    local rustup_tool
    rustup_tool="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
    if [[ -x "$rustup_tool" ]]; then echo "$rustup_tool"; return; fi
    find /usr/lib -maxdepth 3 -path '/usr/lib/llvm-*/bin/llvm-profdata' 2>/dev/null | sort -V | tail -1
}
# What the binary was built with besides the sources: the compiler and the flags.
BUILT_WITH="$(rustc -vV)
RUSTFLAGS=${RUSTFLAGS:-}"
if [[ "${FRESH:-0}" != 1 && -x "$OUT/keypin" && "$(cat "$OUT/keypin.built-with" 2>/dev/null)" == "$BUILT_WITH" ]] \
    && [[ -z "$(cd "$ROOT" && find src Cargo.toml Cargo.lock benches/pgo.sh -newer "$OUT/keypin" -print -quit)" ]]; then
    log "up to date: $OUT/keypin"
    echo "$OUT/keypin"
    exit 0
fi
PROFDATA=$(profdata_tool)
[[ -n "$PROFDATA" && -x "$PROFDATA" ]] \
    || die "no llvm-profdata: rustup component add llvm-tools, apt-get install llvm-19, or set LLVM_PROFDATA"
for tool in curl openssl; do command -v "$tool" >/dev/null || die "$tool not installed"; done

# The target is named, so that RUSTFLAGS reach keypin and its dependencies but
# not build scripts and proc macros; each step has its own target directory, so
# neither rebuilds the other's.
build() { # TARGET_DIR RUSTFLAGS: the caller's RUSTFLAGS (e.g. -Ctarget-cpu) are kept
    (cd "$ROOT" && CARGO_TARGET_DIR="$1" RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$2" \
        cargo build --profile dist --locked --quiet --target "$HOST")
}

log "1/3 building keypin instrumented"
build "$OUT/gen" "-Cprofile-generate=$DATA"
rm -rf "$DATA" && mkdir -p "$DATA" "$STATE"

log "2/3 training on the bench job (${TRAIN}s a load)"
KEYPIN="$OUT/gen/$HOST/dist/keypin"
KEY="$("$KEYPIN" gen-key)"
keypin_secrets
pids=()
trap keypin_stop_all EXIT
"$PEERS/run.sh" upstream
LLVM_PROFILE_FILE="$DATA/keypin-%p-%m.profraw" keypin_start keypin "$KEYPIN" "$KEYPIN_PORT" \
    "plain_listen = \"127.0.0.1:$PLAIN_PORT\"
trusted_proxies = [\"127.0.0.1\"]"
URL="https://127.0.0.1:$KEYPIN_PORT/"
for i in $(seq 1 10); do
    status=$(keypin_sign_in "$KEYPIN_PORT" "$STATE/cookies.txt" "192.0.2.$i")
    [[ "$status" == 303 ]] || die "sign-in failed ($status); log: $STATE/keypin.log"
done
for i in $(seq 1 3); do # wrong PINs, each from its own address (X-Forwarded-For, trusted)
    BENCH_PIN=13572468 keypin_sign_in "$KEYPIN_PORT" "$STATE/wrong.txt" "198.51.100.$i" >/dev/null
done
COOKIE="__Host-keypin=$(keypin_session "$STATE/cookies.txt")"
load() { # NAME WRK_ARGS...: TRAIN seconds of wrk; fails unless answered, and only with 2xx/3xx
    local name=$1; shift
    wrk -t1 -d"${TRAIN}s" "$@" > "$STATE/$name.txt"
    grep -q '^ *[1-9][0-9]* requests in' "$STATE/$name.txt" && ! grep -q '^  Non-2xx' "$STATE/$name.txt" \
        || die "$name: not answered, or answered with errors ($STATE/$name.txt)"
}
load keep-alive -c32 -H "Cookie: $COOKIE" "$URL"
load new-connections -c4 -H "Cookie: $COOKIE" -H "Connection: close" "$URL"
load signed-out -c4 -H "Accept: text/html" "$URL"
load forward-auth -c16 -H "Cookie: $COOKIE" -H "Host: 127.0.0.1:$KEYPIN_PORT" -H "X-Original-URI: /" \
    -H "X-Original-Method: GET" -H "X-Forwarded-Proto: https" -H "X-Forwarded-For: 192.0.2.1" \
    "http://127.0.0.1:$PLAIN_PORT/.keypin/auth"
if command -v h2load >/dev/null; then
    h2load -t1 -c8 -m10 -D"$TRAIN" -H "cookie: $COOKIE" "$URL" > "$STATE/h2.txt"
    grep -q '^status codes: [1-9][0-9]* 2xx, [0-9]* 3xx, 0 4xx, 0 5xx' "$STATE/h2.txt" \
        || die "HTTP/2: answered with errors ($STATE/h2.txt)"
else
    log "h2load not installed (nghttp2-client): HTTP/2 left out of the training"
fi
kill -TERM "$PID_keypin"
wait "$PID_keypin" || die "the instrumented keypin did not stop cleanly; log: $STATE/keypin.log"
pids=()

log "3/3 merging the profile ($("$PROFDATA" --version | sed -n 's/.*LLVM version //Ip' | head -1)) and building with it"
"$PROFDATA" merge -o "$OUT/keypin.profdata" "$DATA"/*.profraw \
    || die "$PROFDATA cannot read rustc's profiles ($(rustc -vV | sed -n 's/^LLVM version: //p')): use a newer llvm-profdata"
# Named by its contents: cargo does not see a changed file behind the same flag.
sum=$(sha256sum "$OUT/keypin.profdata" | cut -c1-16)
mv "$OUT/keypin.profdata" "$OUT/keypin-$sum.profdata"
build "$OUT/use" "-Cprofile-use=$OUT/keypin-$sum.profdata"
find "$OUT" -maxdepth 1 -name 'keypin-*.profdata' ! -name "keypin-$sum.profdata" -delete
cp "$OUT/use/$HOST/dist/keypin" "$OUT/keypin"
echo "$BUILT_WITH" > "$OUT/keypin.built-with"
echo "$OUT/keypin"
