#!/usr/bin/env python3
"""What wss:// costs the server against ws://: memory per idle connection and CPU per
delivery of a broadcast burst. Plain and TLS alternate, ROUNDS times each, on one release
build, so both see the same (shared, noisy) machine.

    benches/tls_cost.py [--rounds 3] [--idle 5000] [--sockets 1000] [--broadcasts 200]
                        [--out benches/results/tls/runs.jsonl] [--bin PATH=COMMIT ...]

Each run starts `target/release/wspush --ping-interval 0s --idle-timeout 0s` (with
`--tls-cert/--tls-key` for TLS: an ECDSA P-256 certificate made with openssl for the run),
then:
  idle       opens IDLE connections (upgrade answered 101), waits 2 s, and reads the
             server's RSS: (RSS after - RSS before any connection) / IDLE.
  broadcast  SOCKETS connections; BROADCASTS messages of a 100-byte text posted to
             /broadcast back to back over one keep-alive HTTP connection (a burst), every
             socket reading every frame; server CPU (utime+stime from /proc) from the first
             post to the last byte received, per 100,000 deliveries, and deliveries/s
             (bounded by this Python client on the same 2 cores, so a lower bound).
Every run checks that each socket received exactly BROADCASTS frames of the exact bytes.
One JSON line per run is appended to OUT, with the commit of the binary it ran.

--bin (repeatable) compares builds in one session: each round runs every binary (the order
rotated each round), plain and TLS each; COMMIT is the commit the binary was built from. By
default: target/release/wspush, built from the checkout's HEAD.
"""
import argparse, asyncio, http.client, json, os, re, ssl, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "wspush")
PAYLOAD = b'{"order":456,"status":"shipped","at":"2026-12-05T13:00:00Z","pad":"xxxxxxxxxxxxxxxxxxxxxx"}'
assert len(PAYLOAD) <= 125
FRAME = bytes([0x81, len(PAYLOAD)]) + PAYLOAD
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def make_cert(dir):
    cert, key = os.path.join(dir, "cert.pem"), os.path.join(dir, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


class Server:
    def __init__(self, bin, tls):
        args = [bin, "--ws-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--ping-interval", "0s", "--idle-timeout", "0s", "--log", "warn"]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ws = api = None
        while ws is None or api is None:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("wspush exited at start")
            m = re.match(r"wspush: websocket listening on wss?://([\d.]+):(\d+)(/\S*)", line)
            if m:
                ws = (m.group(1), int(m.group(2)), m.group(3))
            m = re.match(r"wspush: http api listening on http://([\d.]+):(\d+)", line)
            if m:
                api = (m.group(1), int(m.group(2)))
        self.ws, self.api = ws, api

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def connect(server, context, id):
    host, port, prefix = server.ws
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost" if context else None, limit=1 << 20)
    writer.write((f"GET {prefix}{id} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def open_many(server, context, n):
    conns = []
    for start in range(0, n, 200):
        conns += await asyncio.gather(*(connect(server, context, f"u{i}") for i in range(start, min(n, start + 200))))
    return conns


def post_broadcasts(api, count):
    conn = http.client.HTTPConnection(*api)
    for _ in range(count):
        conn.request("POST", "/broadcast", body=PAYLOAD, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    conn.close()


async def run_idle(server, context, n):
    before = rss(server.proc.pid)
    conns = await open_many(server, context, n)
    await asyncio.sleep(2)
    after = rss(server.proc.pid)
    for _, writer in conns:
        writer.close()
    return {"connections": n, "rss_before": before, "rss_after": after,
            "rss_per_connection": (after - before) / n}


async def run_broadcast(server, context, n, broadcasts):
    conns = await open_many(server, context, n)
    await asyncio.sleep(1)
    expected = FRAME * broadcasts
    cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
    poster = threading.Thread(target=post_broadcasts, args=(server.api, broadcasts))
    poster.start()

    async def drain(reader):
        got = await asyncio.wait_for(reader.readexactly(len(expected)), 300)
        return got == expected

    exact = all(await asyncio.gather(*(drain(r) for r, _ in conns)))
    t1, cpu1 = time.monotonic(), cpu_seconds(server.proc.pid)
    poster.join()
    for _, writer in conns:
        writer.close()
    deliveries = n * broadcasts
    return {"sockets": n, "broadcasts": broadcasts, "deliveries": deliveries, "exact": exact,
            "seconds": t1 - t0, "deliveries_per_second": deliveries / (t1 - t0),
            "server_cpu_seconds": cpu1 - cpu0,
            "server_cpu_per_100k": (cpu1 - cpu0) / deliveries * 100_000}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=int, default=5000)
    p.add_argument("--sockets", type=int, default=1000)
    p.add_argument("--broadcasts", type=int, default=200)
    p.add_argument("--out", default=os.path.join(ROOT, "benches", "results", "tls", "runs.jsonl"))
    p.add_argument("--bin", action="append", default=[], metavar="PATH=COMMIT")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="wspush-tls-bench-")
    cert, key = make_cert(tmp)
    client_tls = ssl.create_default_context(cafile=cert)
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    bins = [tuple(b.rsplit("=", 1)) for b in a.bin] or [(BIN, head)]
    with open(a.out, "a") as out:
        for round in range(a.rounds):
            shift = round % len(bins)
            order = [False, True] if round % 2 == 0 else [True, False]
            for (bin, commit), tls in [(b, t) for b in bins[shift:] + bins[:shift] for t in order]:
                for scenario in ("idle", "broadcast"):
                    server = Server(bin, (cert, key) if tls else None)
                    try:
                        context = client_tls if tls else None
                        if scenario == "idle":
                            result = asyncio.run(run_idle(server, context, a.idle))
                        else:
                            result = asyncio.run(run_broadcast(server, context, a.sockets, a.broadcasts))
                    finally:
                        server.stop()
                    line = {"scenario": scenario, "tls": tls, "round": round, "commit": commit,
                            "load": os.getloadavg()[0], **result}
                    print(json.dumps(line), flush=True)
                    out.write(json.dumps(line) + "\n")
                    out.flush()


if __name__ == "__main__":
    main()
