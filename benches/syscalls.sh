# Sourced by benches/load.sh (MODE=syscalls): what one proxied request costs each
# target, per request: system calls by name (strace -c on every thread over a
# 3 s wrk run, which strace slows: counts per request stay true, times do not),
# then, over a 4 s run without strace, user and system CPU microseconds and
# context switches (voluntary + involuntary, all threads). Needs strace and wrk;
# COOKIE and LG_CPUS from load.sh.

# per_request NAME URL PID...
per_request() {
    local name=$1 url=$2; shift 2
    local out="$STATE/syscalls-$name" args=() pid task
    for pid in "$@"; do for task in /proc/"$pid"/task/*; do args+=(-p "${task##*/}"); done; done
    strace -c -f -o "$out.strace" "${args[@]}" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    taskset -c "${LG_CPUS:-1}" wrk -t1 -c32 -d3s -H "Cookie: $COOKIE" "$url" > "$out.wrk-traced" 2>&1
    sleep 0.3; kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
    local traced; traced=$(awk '/ requests in /{print $1}' "$out.wrk-traced")

    local before after
    before=$(cpu_and_switches "$@")
    taskset -c "${LG_CPUS:-1}" wrk -t1 -c32 -d4s -H "Cookie: $COOKIE" "$url" > "$out.wrk" 2>&1
    after=$(cpu_and_switches "$@")
    local n; n=$(awk '/ requests in /{print $1}' "$out.wrk")
    awk -v n="$n" -v a="$before" -v b="$after" -v tick="$(getconf CLK_TCK)" -v name="$name" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%-12s user %6.2f us  sys %6.2f us  context switches %.3f  (per request, %d requests)\n", name,
            (y[1] - x[1]) * 1e6 / tick / n, (y[2] - x[2]) * 1e6 / tick / n, (y[3] - x[3]) / n, n }'
    awk -v n="$traced" -v name="$name" 'NR > 2 && $NF != "total" && $4 ~ /^[0-9]+$/ {
        printf "%-12s   %-14s %6.3f per request\n", name, $NF, $4 / n }' "$out.strace" | sort -k3 -nr | head -8
    awk -v n="$traced" -v name="$name" '$NF == "total" { printf "%-12s   %-14s %6.3f per request\n", name, "all", $4 / n }' \
        "$out.strace"
}

# cpu_and_switches PID...: "user_ticks system_ticks context_switches", summed.
cpu_and_switches() {
    local pid user=0 sys=0 switches=0 u s c
    for pid in "$@"; do
        read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
        c=$(cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {t += $2} END {print t + 0}')
        user=$((user + u)); sys=$((sys + s)); switches=$((switches + c))
    done
    echo "$user $sys $switches"
}
