# Sourced by benches/load.sh (MODE=timeline): in what order each target carries
# the requests of a burst. h2load offers a fixed load over HTTP/1.1 (RATE, 15,000
# requests/s by default, on 32 connections: its clients' timers send in bursts)
# for 6 s; over 2 s of it `perf record` takes the target's reads and writes
# (syscall tracepoints), and benches/timeline.py prints, per request, the time
# from reading it off the client's connection to writing the answer, the
# upstream leg, and how many steps of one kind come in a row. The tracepoints
# cost each system call a little, so times under the tracer are longer than
# without it; the order of the steps is what this shows. Needs perf (as root, or
# kernel.perf_event_paranoid <= 1), h2load and python3; COOKIE and LG_CPUS from load.sh.
# One worker a proxy (PIN=1): sockets are told apart by descriptor alone.

[[ "${WORKERS:-}" == 1 ]] || { echo "MODE=timeline needs one worker a proxy: run it with PIN=1" >&2; exit 2; }

# timeline NAME URL PID...
timeline() {
    local name=$1 url=$2; shift 2
    local out="$STATE/timeline-$name" rate=${RATE:-15000} conns=32 pidlist lg
    pidlist=$(IFS='|'; echo "$*")
    rm -f "$out.h2log"
    taskset -c "${LG_CPUS:-1}" h2load --h1 -t1 -c"$conns" --rps=$((rate / conns)) -D 6 \
        --log-file="$out.h2log" -H "cookie: $COOKIE" "$url" > "$out.h2load" 2>&1 &
    lg=$!
    sleep 2
    ss -tnpH | grep -E "pid=($pidlist)," > "$out.ss" || true
    perf record -q -m 16M -o "$out.perf" -p "$(IFS=','; echo "$*")" -e 'syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_read,syscalls:sys_exit_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto' \
        -- sleep 2 2>/dev/null
    wait "$lg" || true
    perf script -i "$out.perf" > "$out.script" 2>/dev/null
    python3 "$HERE/timeline.py" "$name" "$out.script" "$out.ss" "$UP_PORT" "$out.h2log"
}
