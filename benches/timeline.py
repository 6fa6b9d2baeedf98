#!/usr/bin/env python3
"""How a proxy orders a request's four steps, from its system calls.

Reads `perf script` output of the tracepoints benches/timeline.sh records
(sys_enter/sys_exit of the reads, sys_enter of the writes) and `ss -tnpH` of the
proxy's sockets, and prints, per request:

- client read -> client write: from reading a request off a client connection
  to writing that connection's answer (the time the request spends in the proxy);
- upstream write -> upstream read: from sending it upstream to reading the answer;
- the mean length of a run: how many steps of one kind (client read, upstream
  write, upstream read, client write) follow each other. About 1 when the proxy
  carries each request through before the next; near the burst size when it
  does one step for every request of a burst, then the next step.

and h2load's percentiles over its whole run, from its per-request log.

    timeline.py NAME PERF_SCRIPT_FILE SS_FILE UPSTREAM_PORT H2LOAD_LOG
"""

import re
import statistics
import sys

READS = {"read", "recvfrom", "readv", "recvmsg"}
EVENT = re.compile(r"\s*\S+\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+): (.*)")
FD = re.compile(r"fd: (0x[0-9a-f]+)")


def sockets(ss_file, upstream_port):
    """The proxy's upstream and client connections, by file descriptor."""
    upstream, client = set(), set()
    for line in open(ss_file):
        fields, fd = line.split(), re.search(r"fd=(\d+)", line)
        if fd and len(fields) >= 5:
            (upstream if fields[4].endswith(f":{upstream_port}") else client).add(int(fd.group(1)))
    return upstream, client


def steps(perf_file, upstream, client):
    """(time in us, step) for each read that returned data and each write, in order."""
    pending, out = {}, []
    for line in open(perf_file):
        m = EVENT.match(line)
        if not m:
            continue
        tid, t, edge, call, rest = int(m[1]), float(m[2]) * 1e6, m[3], m[4], m[5]
        if edge == "enter":
            fd = FD.search(rest)
            if not fd:
                continue
            fd = int(fd.group(1), 16)
            if call in READS:
                pending[tid] = fd
                continue
            step = "w"
        elif tid in pending:
            fd = pending.pop(tid)
            if not 0 < int(rest.strip(), 16) < 2**63:
                continue
            step = "r"
        else:
            continue
        side = "u" if fd in upstream else "c" if fd in client else None
        if side:
            out.append((t, side + step, fd))
    out.sort()
    return out


def percentiles(values):
    values = sorted(values)
    if not values:
        return "none"
    p50, p90, p99 = (values[min(len(values) - 1, int(len(values) * q))] for q in (0.5, 0.9, 0.99))
    return f"p50 {p50:5.0f}  p90 {p90:5.0f}  p99 {p99:5.0f} us  ({len(values)} requests)"


def main():
    name, perf_file, ss_file, upstream_port, h2load_log = sys.argv[1:6]
    upstream, client = sockets(ss_file, upstream_port)
    read_at, sent_at, inside, leg, runs = {}, {}, [], [], []
    previous = None
    for t, kind, fd in steps(perf_file, upstream, client):
        if kind == "cr":
            read_at[fd] = t
        elif kind == "cw" and fd in read_at:
            inside.append(t - read_at.pop(fd))
        elif kind == "uw":
            sent_at[fd] = t
        elif kind == "ur" and fd in sent_at:
            leg.append(t - sent_at.pop(fd))
        if kind == previous:
            runs[-1] += 1
        else:
            runs.append(1)
        previous = kind
    run = statistics.mean(runs) if runs else float("nan")
    print(f"{name:<12} client read -> client write     {percentiles(inside)}")
    print(f"{name:<12} upstream write -> upstream read {percentiles(leg)}")
    print(f"{name:<12} steps of one kind in a row      {run:.1f} on average")
    waits = [int(line.split("\t")[2]) for line in open(h2load_log) if line.count("\t") >= 2]
    print(f"{name:<12} h2load, its whole run           {percentiles(waits)}")


if __name__ == "__main__":
    main()
