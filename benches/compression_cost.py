#!/usr/bin/env python3
"""What permessage-deflate (`--compression`) costs and saves against no compression, for a
1 KiB JSON message: memory per connection, bytes on the wire per delivered message, server
CPU per delivery and broadcast deliveries/s (compress-once: one deflate per broadcast and
worker, not per socket). The variants (off, and on at each level of --levels) alternate,
ROUNDS times each (the order reversed each round), on one release build, so all see the same
(shared, noisy) machine.

    benches/compression_cost.py [--rounds 3] [--idle 5000] [--sockets 1000]
        [--broadcasts 500] [--rate 20] [--duration 10] [--no-sustained]
        [--unicast 10] [--no-unicast]
        [--levels default] [--out benches/results/compression/runs.jsonl]
        [--wspush-bin PATH]

Every client offers `Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits`
(as browsers do), in both variants: the one difference is the server's `--compression`.
With it, every 101 must accept permessage-deflate; without it, none may. Each run starts
`wspush --ping-interval 0s --idle-timeout 0s [--compression [--compression-level N]]`
(default threshold, 256 bytes; `--levels 1,default` compares level 1 with the default
level, each line records `level`), then:
  idle       IDLE connections held 2 s; server RSS per connection.
  broadcast  a burst: BROADCASTS posts of the payload to /broadcast back to back over 8
             keep-alive HTTP connections at once (from a process of their own), to
             SOCKETS connections.
  sustained  the same, paced over one HTTP connection: RATE broadcasts/s for DURATION s;
             latency from each post to each socket's read of its frame (p50/p99/max; this
             Python client's loop, serving every socket, included).
  unicast    a burst of UNICAST messages to each of the SOCKETS ids (`POST /socket/u{i}`,
             SOCKETS x UNICAST posts over 8 HTTP connections): each message is deflated
             for its one socket, so the level's CPU is paid per delivery.
For broadcast, sustained and unicast: deliveries/s, server CPU-s (utime+stime from /proc) per
100,000 deliveries, the raw bytes the clients read (frame headers included) per delivered
message, cross-checked against the server's `bytes_out` and `messages_out` (`GET /stats`),
and the server's `messages_deflated` per post (compress-once: a broadcast is deflated once per
worker, not per socket; a unicast once).

Exactness: every frame is checked (after the timed phase, which only walks the frame
headers to count and stamp frames); with compression on each must be RSV1 text whose payload,
inflated on its own (`zlib.decompressobj(-15)`, fed the payload and 00 00 ff ff), is the
exact payload; with it off, a plain text frame of the exact payload. A socket must read
exactly as many frames as broadcasts were posted, every post must be answered 200 with
every socket reached, and the server's `messages_out` and `bytes_out` over the phase must
equal what the clients read (so a copy sent after a socket's last expected frame counts
too). Anything else makes the run inexact: its line says `"exact": false` with its
`faults`, no medians are printed, and the exit status is 1.

The payload is `benches/compression_payload.json` (an order event, 1,045 bytes of UTF-8
JSON, compact as a service would serialise it); every line records its length, SHA-256 and
text, and its size deflated by Python's C zlib at levels 1 and 6 (for reference).
"""
import argparse, asyncio, hashlib, os, statistics, time, zlib

import costlib

PAYLOAD_FILE = os.path.join(costlib.ROOT, "benches", "compression_payload.json")
OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
# RFC 7692 section 7.2.1: the sender removed these 4 bytes; the receiver appends them.
SYNC_TAIL = b"\x00\x00\xff\xff"
# The burst's HTTP connections, posting at once (see costlib.Poster).
POST_CONNECTIONS = 8
# Bound on how long a socket may wait for its frames after the last post would be due.
READ_TIMEOUT = 120


def extension_answer(head):
    """The value of the 101's Sec-WebSocket-Extensions header, or None."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            return value.strip()
    return None


def check_answers(conns, compression):
    """Every upgrade negotiated permessage-deflate (compression on) or nothing (off)."""
    for _, _, head in conns:
        answer = extension_answer(head)
        if compression:
            assert answer is not None and answer.startswith("permessage-deflate"), head
        else:
            assert answer is None, head


class SocketCheck:
    """One socket's frames: read until `count` have come (or the deadline), then checked.

    While the phase is timed, only the frame headers are walked (to count frames and stamp
    each one's arrival: the k-th frame is the k-th broadcast, one socket's frames keep
    their order), so the Python client, on the same cores as the server, limits the rate
    as little as it can. `verify` then checks every frame, after the phase."""

    def __init__(self, payload, compression, count):
        self.payload, self.compression, self.count = payload, compression, count
        self.buf = bytearray()
        self.frames = []  # (start of the frame, start of its payload, end)
        self.at = 0
        self.times = []
        self.faults = {"missing": 0, "corrupt": 0, "unexpected": 0, "extra_bytes": 0, "closed": 0, "timeouts": 0}

    @property
    def bytes(self):
        """Every byte read from the socket, frame headers included."""
        return len(self.buf)

    def walk(self, now):
        """Steps over the complete frames after `at` (up to `count`), stamping them `now`."""
        buf, at = self.buf, self.at
        while len(self.frames) < self.count and len(buf) - at >= 2:
            length, start = buf[at + 1] & 0x7F, at + 2
            if length == 126:
                length, start = int.from_bytes(buf[at + 2:at + 4], "big"), at + 4
            elif length == 127:
                length, start = int.from_bytes(buf[at + 2:at + 10], "big"), at + 10
            if start > len(buf) or len(buf) - start < length:
                break
            self.frames.append((at, start, start + length))
            self.times.append(now)
            at = start + length
        self.at = at

    async def run(self, reader, deadline):
        """Reads until `count` frames, the socket's end or `deadline` (loop time, which is
        monotonic time): one timeout for the whole read, not a timer per read, which would
        cost the client more than the read itself."""
        try:
            async with asyncio.timeout_at(deadline):
                while len(self.frames) < self.count:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        self.faults["closed"] += 1
                        break
                    self.buf += chunk
                    self.walk(time.monotonic())
        except TimeoutError:
            self.faults["timeouts"] += 1
        return self

    def frame_ok(self, first, second, payload):
        """Whether one frame is the payload as this variant must send it: None when it is
        not a frame of that kind at all."""
        if second & 0x80:  # a server frame is never masked
            return None
        if self.compression:
            if first != 0xC1:  # FIN, RSV1, text
                return None
            inflater = zlib.decompressobj(-15)
            try:
                plain = inflater.decompress(payload + SYNC_TAIL, len(self.payload) + 1)
            except zlib.error:
                return False
            return plain == self.payload
        if first != 0x81:  # FIN, text
            return None
        return payload == self.payload

    def verify(self):
        """Checks every frame read; returns the faults."""
        buf = self.buf
        for at, start, end in self.frames:
            verdict = self.frame_ok(buf[at], buf[at + 1], bytes(buf[start:end]))
            if verdict is None:
                self.faults["unexpected"] += 1
            elif not verdict:
                self.faults["corrupt"] += 1
        self.faults["missing"] = self.count - len(self.frames)
        self.faults["extra_bytes"] = len(buf) - self.at
        return self.faults


def reference_sizes(payload):
    """The payload deflated as the server sends it (raw, alone, sync flush, tail removed)
    by this Python's C zlib, at levels 1 and 6: what another deflate makes of the same
    bytes, beside what the server's put on the wire."""
    sizes = {"zlib_version": zlib.ZLIB_RUNTIME_VERSION}
    for level in (1, 6):
        deflater = zlib.compressobj(level, zlib.DEFLATED, -15)
        sizes[f"level_{level}"] = len(deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)) - len(SYNC_TAIL)
    return sizes


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run_idle(server, compression, n):
    result, conns = await costlib.hold_idle(server, n, headers=[OFFER])
    check_answers(conns, compression)
    costlib.close_all(conns)
    return result


async def run_delivery(server, compression, payload, n, broadcasts, interval=None, unicast=False):
    """A broadcast burst (`interval` None) or paced run to `n` sockets, checked exactly;
    `unicast`: a burst of `broadcasts` messages to each socket's own id instead (n x
    broadcasts posts, each deflated for its one socket)."""
    rss_empty = costlib.rss(server.pid)
    conns = await costlib.open_many(server, n, headers=[OFFER])
    check_answers(conns, compression)
    rss_connected = costlib.rss(server.pid)
    posts = n * broadcasts if unicast else broadcasts
    poster = costlib.Poster(server.api, payload, posts, sockets=1 if unicast else n, interval=interval,
                            connections=1 if interval else POST_CONNECTIONS, unicast_ids=n if unicast else None)
    deadline = time.monotonic() + (interval or 0) * broadcasts + READ_TIMEOUT

    async def read_socket(reader):
        return await SocketCheck(payload, compression, broadcasts).run(reader, deadline)

    checks, phase = await costlib.deliver(server, conns, poster, read_socket)
    rss_after = costlib.rss(server.pid)
    costlib.close_all(conns)
    for check in checks:
        check.verify()

    deliveries = n * broadcasts
    faults = {name: sum(c.faults[name] for c in checks) for name in checks[0].faults}
    faults["publish_errors"] = len(poster.errors)
    client_bytes = sum(c.bytes for c in checks)
    bytes_out = costlib.counter_delta(phase, "bytes_out")
    messages_out = costlib.counter_delta(phase, "messages_out")
    # The server's view must match the clients': a frame the clients did not read as one
    # of theirs (a duplicate after a socket's last expected frame) shows here.
    faults["server_messages_mismatch"] = int(messages_out != deliveries)
    faults["server_bytes_mismatch"] = int(bytes_out != client_bytes)
    deflated = costlib.counter_delta(phase, "messages_deflated")
    workers = len(phase["stats_after"]["worker_connections"])
    result = {
        "sockets": n, "broadcasts": 0 if unicast else broadcasts, "posts": posts, "deliveries": deliveries,
        "post_connections": poster.connections,
        "exact": not any(faults.values()), "faults": faults,
        "publish_errors": poster.errors[:5],
        "seconds": phase["seconds"], "deliveries_per_second": deliveries / phase["seconds"],
        "server_cpu_seconds": phase["server_cpu_seconds"],
        "server_cpu_per_100k": phase["server_cpu_seconds"] / deliveries * 100_000,
        "client_cpu_seconds": phase["client_cpu_seconds"], "posting_seconds": phase["posting_seconds"],
        "client_bytes": client_bytes, "wire_bytes_per_message": client_bytes / deliveries,
        "server_bytes_out": bytes_out, "server_bytes_out_per_message": bytes_out / deliveries,
        "server_messages_out": messages_out,
        "messages_deflated": deflated, "workers": workers,
        "deflated_per_post": deflated / posts,
        "rss_empty": rss_empty, "rss_connected": rss_connected, "rss_after": rss_after,
    }
    if interval is not None and any(c.times for c in checks):
        latencies = sorted(t - poster.sent[k] for c in checks for k, t in enumerate(c.times) if k < len(poster.sent))
        sent = poster.sent
        result.update({
            "rate": 1 / interval, "achieved_rate": (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0,
            "latency_ms_p50": percentile(latencies, 0.50) * 1000,
            "latency_ms_p99": percentile(latencies, 0.99) * 1000,
            "latency_ms_max": latencies[-1] * 1000,
            "latency_ms_mean": statistics.fmean(latencies) * 1000,
        })
    return result


def frame(first, payload):
    """A server frame (unmasked) as bytes: `first` is FIN, RSV and opcode."""
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 1 << 16:
        return bytes([first, 126]) + n.to_bytes(2, "big") + payload
    return bytes([first, 127]) + n.to_bytes(8, "big") + payload


def self_test(payload):
    """The client check against crafted streams (Python's zlib compressing): each fault
    must be counted as what it is, and the exact streams must count none."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    compressed = frame(0xC1, (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4])
    plain = frame(0x81, payload)
    corrupt = compressed[:-3] + bytes([compressed[-3] ^ 0x55]) + compressed[-2:]
    cases = [  # (compression, stream, expected faults)
        (True, compressed * 3, {}),
        (False, plain * 3, {}),
        (True, compressed * 2, {"missing": 1, "closed": 1}),
        (True, compressed + plain + compressed, {"unexpected": 1}),
        (False, plain + compressed + plain, {"unexpected": 1}),
        (True, compressed + corrupt + compressed, {"corrupt": 1}),
        (False, plain + frame(0x81, payload[:-1] + b"!") + plain, {"corrupt": 1}),
        (True, compressed * 3 + compressed[:5], {"extra_bytes": 5}),
        (True, compressed + frame(0x88, b"\x03\xe8") + compressed * 2, {"unexpected": 1, "extra_bytes": len(compressed)}),
    ]

    async def check(compression, stream):
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        return await SocketCheck(payload, compression, 3).run(reader, time.monotonic() + 5)

    for i, (compression, stream, expected) in enumerate(cases):
        got = asyncio.run(check(compression, stream))
        faults = {name: count for name, count in got.verify().items() if count}
        assert faults == expected, (i, faults, expected)
        assert got.bytes == len(stream), (i, got.bytes)
    print(f"self-test: {len(cases)} streams checked")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=int, default=5000)
    p.add_argument("--sockets", type=int, default=1000)
    p.add_argument("--broadcasts", type=int, default=500)
    p.add_argument("--rate", type=float, default=20, help="sustained: broadcasts per second")
    p.add_argument("--duration", type=float, default=10, help="sustained: seconds")
    p.add_argument("--no-sustained", action="store_true")
    p.add_argument("--unicast", type=int, default=10, help="unicast: messages to each socket's own id")
    p.add_argument("--no-unicast", action="store_true")
    p.add_argument("--out", default=os.path.join(costlib.ROOT, "benches", "results", "compression", "runs.jsonl"))
    p.add_argument("--wspush-bin", default=costlib.DEFAULT_BIN)
    p.add_argument("--levels", default="default",
                   help="compression on at these levels, comma-separated (`default`: no --compression-level)")
    p.add_argument("--self-test", action="store_true", help="check the client's checks on crafted streams, then exit")
    a = p.parse_args()
    with open(PAYLOAD_FILE, "rb") as f:
        payload = f.read()
    self_test(payload)
    if a.self_test:
        return
    described = {"payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
                 "payload": payload.decode(), "reference_deflate_bytes": reference_sizes(payload)}
    scenarios = ["idle", "broadcast"] + ([] if a.no_sustained else ["sustained"]) + ([] if a.no_unicast else ["unicast"])
    sustained_broadcasts = max(2, int(a.rate * a.duration + 0.5))
    levels = [level.strip() for level in a.levels.split(",")]
    variants = ["off"] + [f"level {level}" for level in levels]
    session = costlib.Session(a.out)
    for round in range(a.rounds):
        for variant in costlib.alternate(variants, round):
            compression = variant != "off"
            level = variant.removeprefix("level ") if compression else None
            args = ["--compression"] if compression else []
            if level not in (None, "default"):
                args += ["--compression-level", level]
            for scenario in scenarios:
                server = costlib.Server(a.wspush_bin, args)
                try:
                    if scenario == "idle":
                        result = asyncio.run(run_idle(server, compression, a.idle))
                    elif scenario == "unicast":
                        result = {"mode": "burst", **asyncio.run(run_delivery(
                            server, compression, payload, a.sockets, a.unicast, unicast=True))}
                    elif scenario == "broadcast":
                        result = {"mode": "burst", **asyncio.run(
                            run_delivery(server, compression, payload, a.sockets, a.broadcasts))}
                    else:
                        result = {"mode": "sustained", **asyncio.run(run_delivery(
                            server, compression, payload, a.sockets, sustained_broadcasts, 1 / a.rate))}
                finally:
                    server.stop()
                session.record({"scenario": scenario, "compression": compression, "level": level,
                                "variant": variant, "round": round, **described, **result})
    delivery = ["deliveries_per_second", "server_cpu_per_100k", "wire_bytes_per_message",
                "server_bytes_out_per_message", "deflated_per_post"]
    table = session.summary("variant", {
        "idle": ["rss_per_connection"], "broadcast": delivery, "unicast": delivery,
        "sustained": delivery + ["latency_ms_p50", "latency_ms_p99", "latency_ms_max"]})
    burst = table["broadcast"]
    for variant in variants[1:]:
        kept = burst[variant]["deliveries_per_second"][0] / burst["off"]["deliveries_per_second"][0]
        ratio = burst[variant]["wire_bytes_per_message"][0] / burst["off"]["wire_bytes_per_message"][0]
        print(f"{variant}: burst deliveries/s kept with compression: {kept:.1%} (target: at least 50%: "
              f"{'met' if kept >= 0.5 else 'MISSED'}); wire bytes per message on/off: {ratio:.3f}")


if __name__ == "__main__":
    main()
