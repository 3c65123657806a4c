#!/usr/bin/env python3
"""What wss:// costs the server against ws://: memory per idle connection and CPU per
delivery of a broadcast burst. Plain and TLS alternate, ROUNDS times each, on one release
build, so both see the same (shared, noisy) machine.

    benches/tls_cost.py [--rounds 3] [--idle 5000] [--sockets 1000] [--broadcasts 200]
                        [--out benches/results/tls/runs.jsonl] [--wspush-bin PATH[=COMMIT] ...]

Each run starts `target/release/wspush --ping-interval 0s --idle-timeout 0s` (with
`--tls-cert/--tls-key` for TLS: an ECDSA P-256 certificate made with openssl for the run),
then:
  idle       opens IDLE connections (upgrade answered 101), holds them 2 s, and reads the
             server's RSS: (RSS after - RSS before any connection) / IDLE.
  broadcast  SOCKETS connections; BROADCASTS messages of a 100-byte text posted to
             /broadcast back to back over one keep-alive HTTP connection (a burst), every
             socket reading every frame; server CPU (utime+stime from /proc) from the first
             post to the last byte received, per 100,000 deliveries, and deliveries/s
             (bounded by this Python client on the same 2 cores, so a lower bound).
Every run checks that each socket received exactly BROADCASTS frames of the exact bytes.
One JSON line per run is appended to OUT; then the session's medians, unless a run was
inexact (then the exit status is 1). The server, the connections and the phase timing are
`costlib.py`'s, shared with `compression_cost.py`.

--wspush-bin given more than once compares builds in one session: each round runs every
binary (the order rotated each round), plain and TLS each; COMMIT is the commit the binary was
built from (recorded in its lines; default: the checkout's HEAD).
"""
import argparse, asyncio, os, ssl, subprocess, tempfile

import costlib

PAYLOAD = b'{"order":456,"status":"shipped","at":"2026-12-05T13:00:00Z","pad":"xxxxxxxxxxxxxxxxxxxxxx"}'
assert len(PAYLOAD) <= 125
FRAME = bytes([0x81, len(PAYLOAD)]) + PAYLOAD


def make_cert(dir):
    cert, key = os.path.join(dir, "cert.pem"), os.path.join(dir, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


async def run_idle(server, context, n):
    result, conns = await costlib.hold_idle(server, n, context=context)
    costlib.close_all(conns)
    return result


async def run_broadcast(server, context, n, broadcasts):
    conns = await costlib.open_many(server, n, context=context)
    expected = FRAME * broadcasts

    async def drain(reader):
        try:
            got = await asyncio.wait_for(reader.readexactly(len(expected)), 300)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        return got == expected

    poster = costlib.Poster(server.api, PAYLOAD, broadcasts, sockets=n)
    results, phase = await costlib.deliver(server, conns, poster, drain)
    costlib.close_all(conns)
    deliveries = n * broadcasts
    return {"sockets": n, "broadcasts": broadcasts, "deliveries": deliveries,
            "exact": all(results) and not poster.errors,
            "seconds": phase["seconds"], "deliveries_per_second": deliveries / phase["seconds"],
            "server_cpu_seconds": phase["server_cpu_seconds"],
            "server_cpu_per_100k": phase["server_cpu_seconds"] / deliveries * 100_000}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=int, default=5000)
    p.add_argument("--sockets", type=int, default=1000)
    p.add_argument("--broadcasts", type=int, default=200)
    p.add_argument("--out", default=os.path.join(costlib.ROOT, "benches", "results", "tls", "runs.jsonl"))
    p.add_argument("--wspush-bin", action="append", default=[], metavar="PATH[=COMMIT]")
    a = p.parse_args()
    binaries = [tuple(b.split("=", 1)) if "=" in b else (b, None) for b in a.wspush_bin] or [(costlib.DEFAULT_BIN, None)]
    tmp = tempfile.mkdtemp(prefix="wspush-tls-bench-")
    cert, key = make_cert(tmp)
    client_tls = ssl.create_default_context(cafile=cert)
    session = costlib.Session(a.out)
    for round in range(a.rounds):
        shift = round % len(binaries)
        runs = [(build, tls) for build in binaries[shift:] + binaries[:shift]
                for tls in costlib.alternate([False, True], round)]
        for (binary, built_from), tls in runs:
            for scenario in ("idle", "broadcast"):
                server = costlib.Server(binary, ["--tls-cert", cert, "--tls-key", key] if tls else [])
                try:
                    context = client_tls if tls else None
                    if scenario == "idle":
                        result = asyncio.run(run_idle(server, context, a.idle))
                    else:
                        result = asyncio.run(run_broadcast(server, context, a.sockets, a.broadcasts))
                finally:
                    server.stop()
                build = {"commit": built_from} if built_from else {}
                variant = f"{built_from or session.commit} {'wss' if tls else 'ws'}"
                session.record({"scenario": scenario, "tls": tls, "variant": variant, "round": round,
                                **build, **result})
    session.summary("variant", {"idle": ["rss_per_connection"],
                                "broadcast": ["server_cpu_per_100k", "deliveries_per_second"]})


if __name__ == "__main__":
    main()
