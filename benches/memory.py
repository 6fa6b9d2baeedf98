#!/usr/bin/env python3
"""keypin's memory, measured on loopback against the shipped build (benches/pgo.sh).

Prints keypin's resident memory (VmRSS, and the high-water mark VmHWM) when idle,
while 1 GB streams through it, and with 10,000 idle keep-alive TLS connections
open (once keypin has parked them, read from its admin /metrics). Bounded in
count and time; stops what it started and removes its files.

usage: python3 benches/memory.py [path/to/keypin]   (default target/pgo/keypin)
IDLE_CONNECTIONS=N changes the 10,000; SETTLE=S how long to wait before the
second reading with them (30 s); HOLD=S keeps them open S more seconds, to look
at keypin meanwhile (heaptrack, gdb).
"""
import http.server
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYPIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/pgo/keypin")
GIB = 1024**3
IDLE_CONNECTIONS = int(os.environ.get("IDLE_CONNECTIONS", "10000"))
HOLD = float(os.environ.get("HOLD", "0"))
SETTLE = float(os.environ.get("SETTLE", "30"))
CHUNK = b"x" * (256 * 1024)


class Upstream(http.server.BaseHTTPRequestHandler):
    """GET /bytes/N streams N bytes; anything else answers "ok"."""

    protocol_version = "HTTP/1.1"
    # Head and body go out in separate writes: without this, Nagle holds the body
    # back until keypin's delayed ACK, some 40 ms per request.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/bytes/"):
            left = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(left))
            self.end_headers()
            while left > 0:
                n = min(left, len(CHUNK))
                self.wfile.write(CHUNK[:n])
                left -= n
        else:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def gauge(admin, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return int(float([l for l in text.splitlines() if l.startswith(name + " ")][0].split()[1]))


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_CONNECTIONS * 2 + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="keypin-memory-")
    config = os.path.join(tmp, "keypin.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
tls_cert = "{tmp}/cert.pem"
tls_key = "{tmp}/key.pem"
self_signed = true
header_read_timeout = "300s"
max_connections = {IDLE_CONNECTIONS + 100}
[secrets]
path = "{ROOT}/config/dev-secrets.toml"
[[route]]
upstream = "http://127.0.0.1:{upstream.server_address[1]}"
public_paths = ["/"]
""")
    env = dict(os.environ, KEYPIN_SESSION_KEYS=subprocess.check_output([KEYPIN, "gen-key"], text=True).strip(), RUST_LOG="warn,keypin=info")
    proc = subprocess.Popen([KEYPIN, "serve", "--config", config, "--log-format", "text"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = admin = None
        deadline = time.time() + 30
        while port is None and time.time() < deadline:
            line = proc.stderr.readline()
            if "listen=" in line:
                port = int(line.split("listen=")[1].split()[0].rsplit(":", 1)[1])
                admin = int(line.split("admin=")[1].split()[0].rsplit(":", 1)[1])
        assert port, "keypin did not start"
        # Keep reading its log (one access line per request): a full pipe would
        # block keypin's writes and stall it.
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])

        def connect():
            sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
            return sock

        def get(sock, path):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError(f"closed before an answer to {path}")
                head += data
            head, rest = head.split(b"\r\n\r\n", 1)
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            got = len(rest)
            while got < length:
                got += len(sock.recv(1 << 20))
            return got

        warm = connect()
        get(warm, "/")
        time.sleep(1)
        idle = status(proc.pid, "VmRSS")
        print(f"idle:                      VmRSS {mib(idle)}")

        before = status(proc.pid, "VmRSS")
        started = time.time()
        assert get(warm, f"/bytes/{GIB}") == GIB
        took = time.time() - started
        print(f"1 GiB streamed in {took:.1f} s: VmRSS {mib(before)} -> high-water {mib(status(proc.pid, 'VmHWM'))}")
        warm.close()

        conns = []
        started = time.time()
        for i in range(IDLE_CONNECTIONS):
            s = connect()
            s.settimeout(10)
            try:
                get(s, "/")
            except Exception as e:
                raise SystemExit(f"connection {i}: {e}")
            conns.append(s)
        opened = time.time() - started
        # keypin parks a connection after about a second of quiet; give it ten.
        deadline = time.time() + 10
        while gauge(admin, "keypin_parked_connections") < IDLE_CONNECTIONS and time.time() < deadline:
            time.sleep(0.5)
        print(f"{IDLE_CONNECTIONS} idle keep-alive TLS connections (opened in {opened:.0f} s, "
              f"{gauge(admin, 'keypin_parked_connections')} parked): VmRSS {mib(status(proc.pid, 'VmRSS'))}",
              flush=True)
        # The allocator hands back what the connections used while being served
        # (some 30 KiB each, for their first second) after its decay time, 10 s.
        time.sleep(SETTLE)
        print(f"  {SETTLE:.0f} s later, still {gauge(admin, 'keypin_parked_connections')} parked: "
              f"VmRSS {mib(status(proc.pid, 'VmRSS'))}")
        if HOLD:
            print(f"holding them {HOLD:.0f} s; keypin is pid {proc.pid}", flush=True)
            time.sleep(HOLD)
        for s in conns:
            s.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
        upstream.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
