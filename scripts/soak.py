#!/usr/bin/env python3
"""Soak test with faults for wspush cluster mode.

    scripts/soak.py                                         # the full run: 10 minutes, 5,000 clients
    scripts/soak.py --duration 60 --clients 500 --ids 100 --history-size 1000   # the short form CI runs
    scripts/soak.py --history-size 1000                     # the full run with history
    scripts/soak.py --redis-cluster --history-size 1000     # against a 3-master Redis Cluster

Three `wspush` nodes (a, b, c) and one `redis-server` on loopback, all started by this
script; CLIENTS independent WebSocket clients (the `websockets` package, in worker
processes) connecting to random nodes and disconnecting at random; a steady stream of
unicast pushes (`POST /socket/{id}` on a random node) and broadcasts (`POST /broadcast`);
Redis killed (-9) and restarted on its port twice, node c killed (-9) and restarted on its
ports once. Every pushed message is `m:<msgid>`: each send is logged (start, end = when the
HTTP answer arrived, target, node, answer) and each client socket logs its id, node,
connect time (after the 101), close time and every message it received with the time.

Timeline (D = --duration; W = warm-up = max(10 s, 10% of D)):

    0 .. W        churn; then HOLD 1: the post-warm-up RSS/fd baseline of a, b, c
    ~20% D        Redis kill -9, restarted after min(8 s, max(3 s, 10% D)), wait healthy
    ~40% D        node c kill -9, restarted on the same ports after min(5 s, max(3 s, 10% D))
    c start + W   HOLD 2: node c's own post-restart baseline (a, b sampled too, for information)
    ~60% D        Redis kill -9 again, restarted as above
    >= D - 15 s   and >= 10 s after the last fault healed: HOLD 3, the end values
    then          pushes stop; after SETTLE + 1 s the clients close (1000); the nodes get
                  SIGTERM; everything is analysed.

A fault step starts at its nominal time or once the previous step is over, whichever is
later, so short runs stretch a little past D (the CI form, D = 60 s, takes about 90 s in
all). The whole script is bounded by D + 120 s (a watchdog kills everything it started and
exits 1; the clock starts after the binary is built, if it had to be). Ctrl-C or SIGTERM
stops everything; every child also dies with the script (PR_SET_PDEATHSIG).

HOLD: every client reconnects to its home node (client index mod 3) and stays, so each node
holds exactly its third of the clients. Once every node's `/stats` `connections` equals its
share for 3 consecutive polls, RSS (/proc/PID/status VmRSS) and open fds (/proc/PID/fd) are
sampled 5 times, 1 s apart, and the median kept; then churn resumes. The open-fd count is
dominated by the client sockets, so it is only comparable at the same population: this is why
the measurements are made in holds, not at random moments.

Delivery model. SETTLE = 1 s (--settle) covers a socket's registration after the 101 and its
node's SUBSCRIBE to the id's channel (batched within 50 ms), plus scheduling noise; with
--settle 0 the check does catch the sends that race a fresh socket's subscription. A send S is
*expected* on socket K when K's id is S's target (or S is a broadcast) and K was open from
S.start - SETTLE to S.end + SETTLE (open = 101 received; closed = when the client started its
close, or noticed the connection drop, or the node was killed). An expected delivery is
*required* (a miss is a failure) when K is on the node S was posted to (local delivery, which
must work even while Redis is down), or when the window [S.start - SETTLE, S.end + SETTLE]
overlaps no outage of the path: a Redis outage lasts from the kill until both the sending and
the receiving node report /healthz ok again; node c's outage from its kill until its new
process reports ok (for sends from or to node c). Otherwise a miss is *excused* and counted
by cause. Checks:

  1 every required delivery arrived, exactly once;
  2 no socket received any message twice; no socket received a message for another id or a
    message nobody sent;
  3 misses only where excused (counted per cause); cluster counters `publish_dropped` and
    `delivery_dropped` stay 0 (no queue overflowed at this load); `publish_failed` reported;
  4 no node that was not killed exited, each stops with exit code 0 on SIGTERM, and no node's
    stderr contains "panicked";
  5 each node's RSS and open-fd count at HOLD 3 within 10% of its baseline (HOLD 1; node c:
    HOLD 2), and every HOLD reached its population (a node whose `connections` does not come
    down to the clients actually connected leaks sockets);
  6 /healthz (polled every 250 ms per node): every live node answers 503 degraded within 3 s
    of each Redis kill, stays degraded until Redis is back, answers 200 ok within 10 s of the
    restart, and is never degraded outside an outage (a freshly started node c may be
    degraded up to 5 s while it connects).

With history (--history-size N > 0; default 0 = history off, the checks above as they are):
the nodes run with `--history-size N` and Redis with AOF (`--appendonly yes --appendfsync
always`, its files in the run directory), so a kill -9 loses nothing Redis acknowledged. Every
client offers `wspush.v1` and keeps its position in its id (the last `E:O` head, `!pos` or
`!lost`); a share of its reconnects (--resume-share, default 0.5) resume with `?since=` that
position, to a random node. Sends answered 200 (with their position) and 202 (queued while
Redis was unreachable, positioned when it returns) are both *accepted*. Before the clients
stop, every id's history is read from Redis (GET /history/{id}, paged): with the POST answers
and the heads the sockets received it is the log of positions. Unicast is judged by position,
not by the outage excuses of checks 1 and 3 (broadcasts keep them: live-only; a v1 socket is
live from its `!pos`):

  (a) an accepted send made while socket K of its id was open (start >= K's open + SETTLE) is
      *required* on K if K is still open when it is due: SETTLE after its answer or, if the
      send's window touches a Redis outage of the sending or K's node, CATCHUP (10 s) after both
      report ok again. So a socket connected across an outage must get what was sent before,
      during (202) and at the kill. Excused, counted: a fresh socket whose `!pos` came after the
      send, at a position that already includes it (it connected while its node could not read
      a position). Not required: K closed before the send was due (counted);
  (b) a resumed socket must also get every accepted send positioned after its `since` (made
      before it opened; due SETTLE after its open, or CATCHUP after its node healed);
  every socket's heads are contiguous offsets of one epoch from its start (its `since`, else
  its `!pos`): nothing twice, nothing skipped, in order, a `!pos` where it already is. Checks
  (with 1 to 6; check 1 counts the required deliveries of (a) and (b) too):

  7 one order: every (id, epoch, offset) holds one message and every message one position
    across the POST answers, Redis's histories and what the sockets received; Redis's
    histories are gapless; each socket's offsets contiguous; no `!lost` (with AOF nothing is
    lost); each id keeps one epoch; every socket selected `wspush.v1` and got its `!pos`
    within POS_WITHIN (5 s) of its open unless an outage was near;
  8 every accepted send (200 and 202, the 202s in flight at a Redis kill counted apart) is in
    the log exactly once;
  9 there were resumes, and resumed sockets missed nothing after their `since` (replay and
    live).

With --redis-cluster the nodes use a Redis Cluster of 3 masters with a replica each
(`redis+cluster://`, every node a seed, `cluster-node-timeout` 2 s), and each "Redis outage"
kills (-9) one master (of slot 0 at the first, of slot 16383 at the second): its replica is
promoted while the other masters keep serving, so the outage lasts from the kill until the
promotion (the `restart` of the checks: no node may be ok before it, each must be ok within 10 s
after it) and the killed server comes back as a replica after the usual down time. With
history every master has AOF; Redis Cluster replicates asynchronously, so a write the killed
master acknowledged and had not yet sent to its replica would be missing (check 7 would say
so: no `!lost` is allowed).

With --redis-persistence none (Redis without AOF: each restart is a new epoch) the rule is
"exactly once up to the `!lost`, and from it": a message Redis lost with its data is excused
when the socket was told (`!lost` from its epoch, or up to its position in the new one); a
`!lost` to a new epoch is expected, and every socket live across a restart must get one;
a pipeline in flight at the kill may be appended in both epochs (counted).

The history soak thus proves that a socket connected across Redis kills (AOF) and node
restarts misses nothing and gets nothing twice, in offset order, including what was sent
while Redis was down, and that a client reconnecting with `?since=` to any node gets exactly
what it missed, then live.

Exit 0 only if every check passed, 1 with the failing checks listed. Output: a summary table
and one JSON line on stdout; the full report is `report.json` in the run directory
(target/soak/<timestamp>/, with every process's output, the clients' records clients-*.pkl
and the sends, /healthz polls and samples in orchestrator.pkl) and --report FILE.

The binary it soaks is the workspace's current code: without --binary it runs
`cargo build --release -p wspush --bin wspush` first (a no-op when up to date), so an old
target/release/wspush is never soaked by mistake; --binary PATH soaks that build as it is.
The binary is copied into the run directory before the start, so a concurrent `cargo build`
cannot swap it under the restarted node.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import atexit
import bisect
import collections
import ctypes
import json
import multiprocessing as mp
import os
import pickle
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_NAMES = ("a", "b", "c")
SETTLE = 1.0
MEAN_LIFETIME = 30.0
HEALTH_EVERY = 0.25
SAMPLE_EVERY = 2.0
STATS_EVERY = 5.0
SENDER_CONNS_PER_NODE = 4
TOLERANCE = 0.10
DEGRADED_WITHIN = 3.0
HEALED_WITHIN = 10.0
STARTUP_DEGRADED_GRACE = 5.0
# History (--history-size N > 0): after an outage heals (the nodes' /healthz ok), how long a
# node may take to resubscribe, read what its sockets missed and deliver it (its history
# reader reconnects on its own backoff, and reads that failed meanwhile back off 0.5 s to
# 8 s: about 5 s was seen on a quiet machine, so 10 s leaves room for a loaded one); how soon
# a socket must get its `!pos` when no outage is near.
CATCHUP = 10.0
POS_WITHIN = 5.0
V1 = "wspush.v1"

now = time.monotonic


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Environment: the websockets package, the binary, child processes.


def ensure_websockets() -> None:
    try:
        import websockets  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("WSPUSH_SOAK_VENV") == "1":
        sys.exit("soak: cannot import websockets even in target/soak-venv")
    venv = ROOT / "target" / "soak-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"installing websockets into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import websockets"], capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "websockets"], check=True)
    os.environ["WSPUSH_SOAK_VENV"] = "1"
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


_libc = None


def die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL): a child dies if this script is killed."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)
    except OSError:
        pass


CHILDREN: list[subprocess.Popen] = []


def spawn(args: list[str], out: Path, err: Path) -> subprocess.Popen:
    with open(out, "ab") as fo, open(err, "ab") as fe:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, preexec_fn=die_with_parent)
    CHILDREN.append(proc)
    return proc


def kill_everything() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(5)
            except Exception:
                pass
    for proc in mp.active_children():
        try:
            proc.kill()
        except Exception:
            pass


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port


# --redis-cluster: how long a cluster node may go unanswered before its replica takes over.
CLUSTER_NODE_TIMEOUT_MS = 2000


def cluster_free_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    pass


def proc_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# A small HTTP/1.1 client with one keep-alive connection.


class HttpError(Exception):
    pass


class Http:
    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.transport.abort()
            except Exception:
                pass
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._request(method, path, body), timeout)
        except asyncio.CancelledError:
            self.close()
            raise
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError) as e:
            self.close()
            raise HttpError(f"{type(e).__name__}: {e}") from None

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: text/plain; charset=utf-8\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        reader = self.reader
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            data = b"".join(chunks)
        else:
            data = await reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data


# ---------------------------------------------------------------------------------------
# Client worker processes.


def worker_main(wcfg: dict, pipe) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(worker_async(wcfg, pipe))
    except Exception as e:  # reported to the parent, which fails the run
        try:
            pipe.send(("error", repr(e)))
        except Exception:
            pass
        raise


class Rec:
    """One client socket (one connection)."""

    __slots__ = ("client", "id", "node", "t_try", "t_open", "t_close", "t_end", "code", "msgs", "times", "other", "err", "dropped",
                 "since", "proto", "offs", "eps", "ctl")

    def __init__(self, client, cid, node, t_try, t_open):
        self.client, self.id, self.node, self.t_try, self.t_open = client, cid, node, t_try, t_open
        self.t_close = self.t_end = None
        self.code = None
        self.msgs = array.array("q")
        self.times = array.array("d")
        self.other: list[str] = []
        self.err = None
        self.dropped = False
        # History only: the `since` it resumed from, the selected subprotocol, each message's
        # position (epoch index into the worker's table and offset; -1 for a `-` head) and
        # the control texts as (kind, epoch, offset, time, messages received before it).
        self.since: str | None = None
        self.proto: str | None = None
        self.offs = array.array("q")
        self.eps = array.array("i")
        self.ctl: list[tuple] = []


async def worker_async(wcfg: dict, pipe) -> None:
    import websockets
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    seed, n_ids, urls = wcfg["seed"], wcfg["ids"], wcfg["urls"]

    class State:
        mode = "idle"
        changed = asyncio.Event()

    started = asyncio.Event()
    recs: list[Rec] = []
    connect_failures = collections.Counter()
    failure_kinds = collections.Counter()
    counters = {"connected": 0, "lag_max": 0.0, "lag_over_half": 0}

    def set_mode(mode: str) -> None:
        State.mode = mode
        old, State.changed = State.changed, asyncio.Event()
        old.set()

    def on_pipe() -> None:
        try:
            while pipe.poll():
                msg = pipe.recv()
                if msg[0] == "mode":
                    set_mode(msg[1])
                    started.set()
        except (EOFError, OSError):
            loop.remove_reader(pipe.fileno())
            set_mode("stop")
            started.set()

    loop.add_reader(pipe.fileno(), on_pipe)

    history = wcfg["history"]
    epochs: list[str] = []
    epoch_index: dict[str, int] = {}

    def intern(epoch: str) -> int:
        i = epoch_index.get(epoch)
        if i is None:
            i = epoch_index[epoch] = len(epochs)
            epochs.append(epoch)
        return i

    async def read(ws, rec: Rec, position: list) -> None:
        msgs, times = rec.msgs, rec.times
        offs, eps, v1 = rec.offs, rec.eps, rec.proto == V1
        try:
            async for m in ws:
                t = now()
                if type(m) is str and m.startswith("m:") and not v1:
                    msgs.append(int(m[2:]))
                    times.append(t)
                elif v1 and type(m) is str:
                    # `HEAD "\n" BODY` (HEAD `EPOCH:OFFSET` or `-`), `!pos E:O`, `!lost E:O`.
                    try:
                        if m.startswith("!"):
                            kind, _, p = m[1:].partition(" ")
                            e, _, o = p.rpartition(":")
                            if kind not in ("pos", "lost") or not e:
                                raise ValueError(m)
                            rec.ctl.append((kind, e, int(o), t, len(msgs)))
                            position[0] = p
                            continue
                        head, _, body = m.partition("\n")
                        if not body.startswith("m:"):
                            raise ValueError(m)
                        msgid = int(body[2:])
                        if head == "-":
                            off, ep = -1, -1
                        else:
                            e, _, o = head.rpartition(":")
                            off, ep = int(o), intern(e)
                            if not e:
                                raise ValueError(m)
                    except ValueError:
                        rec.other.append(repr(m)[:80])
                        continue
                    msgs.append(msgid)
                    times.append(t)
                    offs.append(off)
                    eps.append(ep)
                    if off >= 0:
                        position[0] = head
                else:
                    rec.other.append(repr(m)[:80])
        except ConnectionClosed:
            pass
        except Exception as e:
            rec.err = repr(e)
        rec.t_end = now()

    async def client(i: int) -> None:
        rng = random.Random(f"{seed}-{i}")
        home, cid = i % 3, str(i % n_ids)
        # History: the client's position in its id (the last head, `!pos` or `!lost` seen).
        position: list = [None]
        await asyncio.sleep(rng.uniform(0, wcfg["stagger"]))
        while State.mode != "stop":
            node = home if State.mode == "hold" else rng.randrange(3)
            since = None
            if history and position[0] is not None and rng.random() < wcfg["resume_share"]:
                since = position[0]
            t_try = now()
            try:
                ws = await asyncio.wait_for(
                    websockets.connect(
                        urls[node] + cid + (f"?since={since}" if since else ""), ping_interval=None, compression=None,
                        open_timeout=10, close_timeout=5, max_size=1 << 20, subprotocols=[V1] if history else None,
                    ),
                    15,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                connect_failures[node] += 1
                failure_kinds[type(e).__name__] += 1
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                continue
            rec = Rec(i, cid, node, t_try, now())
            if history:
                rec.since, rec.proto = since, ws.subprotocol
            recs.append(rec)
            counters["connected"] += 1
            reader = asyncio.create_task(read(ws, rec, position))
            deadline = rec.t_open + max(1.0, rng.expovariate(1.0 / MEAN_LIFETIME))
            while True:
                mode, event = State.mode, State.changed
                if mode == "stop" or (mode == "hold" and node != home):
                    break
                timeout = None
                if mode != "hold":
                    timeout = deadline - now()
                    if timeout <= 0:
                        break
                waiter = asyncio.ensure_future(event.wait())
                await asyncio.wait([reader, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader.done():
                    rec.dropped = True
                    break
                if event.is_set() and mode == "hold" and State.mode == "churn":
                    deadline = now() + max(1.0, rng.expovariate(1.0 / MEAN_LIFETIME))
            if rec.dropped:
                rec.t_close = rec.t_end
            else:
                rec.t_close = now()
                try:
                    await asyncio.wait_for(ws.close(), 8)
                except Exception:
                    pass
                try:
                    await asyncio.wait_for(reader, 5)
                except Exception:
                    reader.cancel()
            code = getattr(ws, "close_code", None)
            rec.code = None if code is None else int(code)  # a plain int: the records load without websockets
            if rec.t_end is None:
                rec.t_end = now()
            counters["connected"] -= 1
            if State.mode == "stop":
                break
            await asyncio.sleep(rng.uniform(0.05, 0.3) if State.mode == "hold" else rng.uniform(0.1, 1.0))

    async def lag_monitor() -> None:
        while State.mode != "stop":
            t = now()
            await asyncio.sleep(0.1)
            lag = now() - t - 0.1
            counters["lag_max"] = max(counters["lag_max"], lag)
            if lag > 0.5:
                counters["lag_over_half"] += 1

    async def status() -> None:
        while State.mode != "stop":
            try:
                pipe.send(("status", counters["connected"], counters["lag_max"]))
            except OSError:
                return
            await asyncio.sleep(1.0)

    pipe.send(("ready",))
    await asyncio.wait_for(started.wait(), 120)
    cpu0 = time.process_time()
    tasks = [asyncio.create_task(client(i)) for i in wcfg["clients"]]
    aux = [asyncio.create_task(lag_monitor()), asyncio.create_task(status())]
    done, pending = await asyncio.wait(tasks, timeout=wcfg["max_seconds"])
    for t in pending:
        t.cancel()
    for t in aux:
        t.cancel()
    errors = [repr(t.exception()) for t in done if not t.cancelled() and t.exception() is not None]
    result = {
        "recs": [
            (r.client, r.id, r.node, r.t_try, r.t_open, r.t_close, r.t_end, r.code, r.msgs.tobytes(), r.times.tobytes(), r.other[:5], r.err, r.dropped,
             r.since, r.proto, r.offs.tobytes(), r.eps.tobytes(), r.ctl)
            for r in recs
        ],
        "epochs": epochs,
        "connect_failures": dict(connect_failures),
        "failure_kinds": dict(failure_kinds),
        "lag_max": counters["lag_max"],
        "lag_over_half": counters["lag_over_half"],
        "unfinished_clients": len(pending),
        "client_errors": errors[:10],
        "cpu_seconds": time.process_time() - cpu0,
    }
    path = Path(wcfg["out"])
    with open(path, "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.send(("done", str(path)))


# ---------------------------------------------------------------------------------------
# The orchestrator.


class NodeProc:
    def __init__(self, gen: int, proc: subprocess.Popen, start_t: float):
        self.gen, self.proc, self.start_t = gen, proc, start_t
        self.kill_t: float | None = None
        self.last_stats: dict | None = None


class Node:
    def __init__(self, index: int, name: str):
        self.index, self.name = index, name
        self.node_id = f"node-{name}"
        self.ws_port, self.api_port = free_port(), free_port()
        self.gens: list[NodeProc] = []
        self.senders = [Http(self.api_port) for _ in range(SENDER_CONNS_PER_NODE)]
        self.health_http = Http(self.api_port)
        self.stats_http = Http(self.api_port)
        self.stats_lock = asyncio.Lock()

    @property
    def current(self) -> NodeProc:
        return self.gens[-1]

    def alive(self) -> bool:
        return bool(self.gens) and self.current.kill_t is None and self.current.proc.poll() is None

    def reset_connections(self) -> None:
        for h in [*self.senders, self.health_http, self.stats_http]:
            h.close()


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = ROOT / "target" / "soak" / f"{stamp}-{os.getpid()}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.binary = self.run_dir / "wspush"
        shutil.copy2(args.binary, self.binary)
        self.redis_port = free_port()
        self.redis_dir = self.run_dir / "redis-data"
        self.redis_dir.mkdir(exist_ok=True)
        self.redis_proc: subprocess.Popen | None = None
        # --redis-cluster: 3 masters with a replica each; the port of each node, its process
        # (None while killed), and the node a Redis outage killed.
        self.cluster_ports: list[int] = [cluster_free_port() for _ in range(6)] if args.redis_cluster else []
        self.cluster_procs: dict[int, subprocess.Popen | None] = {}
        self.cluster_victim: int | None = None
        self.history_log: dict[str, dict] = {}
        self.history_fetch_errors: list[str] = []
        self.redis_gen = 0
        self.nodes = [Node(i, n) for i, n in enumerate(NODE_NAMES)]
        self.events: list[tuple[float, str]] = []
        self.redis_outages: list[dict] = []
        self.c_outage: dict | None = None
        self.holds: dict[str, dict] = {}
        self.sends: dict[int, list] = {}
        self.next_msgid = 1
        self.sending = False
        self.queues = [asyncio.Queue() for _ in self.nodes]
        self.health: list[list[tuple]] = [[] for _ in self.nodes]
        self.samples: list[list[tuple]] = [[] for _ in self.nodes]
        self.stats_series: list[list[tuple]] = [[] for _ in self.nodes]
        self.workers: list[dict] = []
        self.failures_setup: list[str] = []
        self.skipped_sends = 0
        self.t0 = now()

    def rel(self, t: float | None) -> float | None:
        return None if t is None else round(t - self.t0, 3)

    def event(self, what: str) -> None:
        self.events.append((now(), what))
        log(f"t={now() - self.t0:7.1f}s {what}")

    # -- processes ---------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        if self.args.redis_cluster:
            return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.cluster_ports)
        return f"redis://127.0.0.1:{self.redis_port}"

    async def start_redis(self) -> None:
        if self.args.redis_cluster:
            return await self.start_cluster()
        self.redis_gen += 1
        log_file = self.run_dir / f"redis-{self.redis_gen}.log"
        persistence = ["--appendonly", "no"]
        if self.args.history_size and self.args.redis_persistence == "aof":
            # Every acknowledged append is on disk before its reply: a kill -9 loses nothing.
            persistence = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.redis_dir)]
        self.redis_proc = spawn(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning", "--maxclients", "10000"],
            log_file, log_file,
        )
        deadline = now() + 15
        while now() < deadline:
            if self.redis_proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log_file.read_text()[-2000:]}")
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.redis_port), 1)
                w.write(b"PING\r\n")
                line = await asyncio.wait_for(r.readline(), 1)
                w.close()
                if line.startswith(b"+PONG"):
                    return
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 15 s")

    def kill_redis(self) -> float:
        if self.args.redis_cluster:
            return self.kill_cluster_master()
        self.redis_proc.send_signal(signal.SIGKILL)
        self.redis_proc.wait(10)
        return now()

    # -- a Redis Cluster (--redis-cluster) ----------------------------------------------

    def spawn_cluster_node(self, port: int) -> None:
        data = self.run_dir / f"redis-{port}"
        data.mkdir(exist_ok=True)
        persistence = ["--appendonly", "no"]
        if self.args.history_size and self.args.redis_persistence == "aof":
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        log_file = self.run_dir / f"redis-{port}.log"
        self.cluster_procs[port] = spawn(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(data), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0",
             "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning", "--maxclients", "10000"],
            log_file, log_file,
        )

    def cluster_nodes(self) -> list[dict]:
        """CLUSTER NODES of a live node: [{port, master, failed, slots: [(a, b)]}]."""
        for port, proc in self.cluster_procs.items():
            if proc is None or proc.poll() is not None:
                continue
            out = subprocess.run(["redis-cli", "-p", str(port), "CLUSTER", "NODES"], capture_output=True,
                                 text=True, timeout=5).stdout
            nodes = []
            for line in out.splitlines():
                f = line.split()
                if len(f) < 8:
                    continue
                slots = []
                for r in f[8:]:
                    if r.startswith("["):
                        continue
                    a, _, b = r.partition("-")
                    slots.append((int(a), int(b or a)))
                nodes.append({"port": int(f[1].split("@")[0].rsplit(":", 1)[1]), "master": "master" in f[2],
                              "failed": "fail" in f[2] and "fail?" not in f[2], "slots": slots})
            if nodes:
                return nodes
        return []

    def cluster_master_of(self, slot: int) -> int | None:
        for n in self.cluster_nodes():
            if n["master"] and not n["failed"] and any(a <= slot <= b for a, b in n["slots"]):
                return n["port"]
        return None

    async def wait_cluster_ok(self, seconds: float) -> None:
        """Every slot served by a live master, and every live replica synced with its master."""
        deadline = now() + seconds
        while now() < deadline:
            ok = True
            for port, proc in self.cluster_procs.items():
                if proc is None:
                    continue
                info = subprocess.run(["redis-cli", "-p", str(port), "INFO", "replication"], capture_output=True,
                                      text=True, timeout=5).stdout
                state = subprocess.run(["redis-cli", "-p", str(port), "CLUSTER", "INFO"], capture_output=True,
                                       text=True, timeout=5).stdout
                ok &= "cluster_state:ok" in state and ("role:master" in info or "master_link_status:up" in info)
            masters = [n for n in self.cluster_nodes() if n["master"] and not n["failed"] and n["slots"]]
            if ok and sum(b - a + 1 for n in masters for a, b in n["slots"]) == 16384:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the Redis Cluster is not ok after {seconds:.0f} s; see {self.run_dir}")

    async def start_cluster(self) -> None:
        """The first call creates the cluster; a later one restarts the killed node (it rejoins
        as a replica of the master that took over)."""
        self.redis_gen += 1
        if not self.cluster_procs:
            for port in self.cluster_ports:
                self.spawn_cluster_node(port)
            await asyncio.sleep(0.3)
            create = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.cluster_ports],
                      "--cluster-replicas", "1", "--cluster-yes"]
            for attempt in range(50):
                done = subprocess.run(create, capture_output=True, text=True, timeout=60)
                if done.returncode == 0:
                    break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
        else:
            self.spawn_cluster_node(self.cluster_victim)
        await self.wait_cluster_ok(60)

    def kill_cluster_master(self) -> float:
        """Kills (-9) the master of slot 0 at the first outage, of slot 16383 at the second."""
        slot = 0 if len(self.redis_outages) == 0 else 16383
        victim = self.cluster_master_of(slot)
        if victim is None:
            raise RuntimeError(f"no master serves slot {slot}")
        proc = self.cluster_procs[victim]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.cluster_procs[victim] = None
        self.cluster_victim = victim
        self.victim_slot = slot
        return now()

    async def wait_promoted(self, seconds: float) -> float | None:
        """When a replica serves the killed master's slots."""
        deadline = now() + seconds
        while now() < deadline:
            master = self.cluster_master_of(self.victim_slot)
            if master is not None and master != self.cluster_victim:
                return now()
            await asyncio.sleep(0.1)
        return None

    async def start_node(self, node: Node) -> None:
        gen = len(node.gens) + 1
        for attempt in range(6):
            out = self.run_dir / f"node-{node.name}-{gen}.stdout"
            err = self.run_dir / f"node-{node.name}-{gen}.stderr"
            args = [
                str(self.binary), "--redis", self.redis_url, "--node-id", node.node_id,
                "--ws-listen", f"127.0.0.1:{node.ws_port}", "--api-listen", f"127.0.0.1:{node.api_port}",
                "--ping-interval", "5", "--idle-timeout", "20",
            ]
            if self.args.history_size:
                args += ["--history-size", str(self.args.history_size)]
            start_t = now()
            proc = spawn(args, out, err)
            line = f"wspush: cluster node {node.node_id} via {self.redis_url}"
            deadline = now() + 15
            while now() < deadline and proc.poll() is None:
                if line in out.read_text(errors="replace"):
                    break
                await asyncio.sleep(0.05)
            text = out.read_text(errors="replace")
            if line in text and f"ws://127.0.0.1:{node.ws_port}/websocket/" in text:
                node.gens.append(NodeProc(gen, proc, start_t))
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            log(f"node {node.name} did not start (attempt {attempt + 1}): {err.read_text(errors='replace')[-500:]}")
            if gen == 1 and "Address already in use" in err.read_text(errors="replace"):
                # A first start only (a restart keeps its ports): another process took a port
                # free_port() found free (an outgoing connection's ephemeral port); pick others.
                node.ws_port, node.api_port = free_port(), free_port()
                for h in [*node.senders, node.health_http, node.stats_http]:
                    h.close()
                    h.port = node.api_port
                err.unlink()
            await asyncio.sleep(0.5)
        raise RuntimeError(f"node {node.name} did not start; see {self.run_dir}")

    def kill_node(self, node: Node) -> float:
        cur = node.current
        # Keep the last counters of this process for the report.
        cur.proc.send_signal(signal.SIGKILL)
        cur.proc.wait(10)
        cur.kill_t = now()
        node.reset_connections()
        return cur.kill_t

    async def healthz(self, node: Node, timeout: float = 1.0) -> int:
        try:
            status, _ = await node.health_http.request("GET", "/healthz", timeout=timeout)
            return status
        except HttpError:
            return 0

    async def wait_healthy(self, nodes: list[Node], timeout: float, since: float | None = None) -> dict[str, float | None]:
        """Waits until each node's /healthz poller has seen 200 after `since` (default now);
        returns, per node, the time of the first such answer (None: not within `timeout`)."""
        since = now() if since is None else since
        deadline = now() + timeout

        def first_ok(node: Node) -> float | None:
            polls = self.health[node.index]
            i = len(polls)
            while i > 0 and polls[i - 1][0] >= since:
                i -= 1
            return next((t for t, gen, code in polls[i:] if code == 200), None)

        while now() < deadline and any(first_ok(n) is None for n in nodes):
            await asyncio.sleep(0.1)
        return {n.name: first_ok(n) for n in nodes}

    async def stats(self, node: Node, timeout: float = 3.0) -> dict | None:
        async with node.stats_lock:
            try:
                status, body = await node.stats_http.request("GET", "/stats", timeout=timeout)
            except HttpError:
                return None
        if status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    # -- background loops --------------------------------------------------------------

    async def health_loop(self, node: Node) -> None:
        while True:
            t = now()
            gen = node.current.gen if node.gens else 0
            code = await self.healthz(node)
            self.health[node.index].append((now(), gen, code))
            await asyncio.sleep(max(0.0, HEALTH_EVERY - (now() - t)))

    async def sample_loop(self) -> None:
        while True:
            for node in self.nodes:
                if node.alive():
                    cur = node.current
                    self.samples[node.index].append(
                        (now(), cur.gen, proc_rss_kb(cur.proc.pid), proc_fds(cur.proc.pid), proc_cpu_seconds(cur.proc.pid))
                    )
            await asyncio.sleep(SAMPLE_EVERY)

    async def stats_loop(self) -> None:
        while True:
            for node in self.nodes:
                if node.alive():
                    gen = node.current
                    s = await self.stats(node)
                    if s is not None and node.current is gen:
                        gen.last_stats = s
                        self.stats_series[node.index].append((now(), gen.gen, s.get("connections"), s.get("cluster")))
            await asyncio.sleep(STATS_EVERY)

    async def progress_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            conns = [self.stats_series[n.index][-1][2] if self.stats_series[n.index] else None for n in self.nodes]
            ok = sum(1 for s in self.sends.values() if s[5] in (200, 202))
            clients = sum(w.get("connected", 0) for w in self.workers)
            lag = max((w.get("lag_max", 0.0) for w in self.workers), default=0.0)
            log(
                f"t={now() - self.t0:7.1f}s clients connected {clients}, node connections {conns}, "
                f"sends ok {ok}/{len(self.sends)}, client loop lag max {lag:.2f}s"
            )

    async def sender_conn(self, node: Node, http_index: int) -> None:
        q = self.queues[node.index]
        while True:
            msgid, kind, target = await q.get()
            http = node.senders[http_index]
            path = "/broadcast" if kind == "b" else f"/socket/{target}"
            body = f"m:{msgid}".encode()
            rec = [kind, target, node.index, now(), None, 0, None, None, None, None, None]
            self.sends[msgid] = rec
            try:
                status, data = await http.request("POST", path, body, timeout=10)
                rec[4] = now()
                rec[5] = status
                try:
                    answer = json.loads(data)
                    rec[6], rec[7] = answer.get("nodes"), answer.get("sockets")
                    rec[9], rec[10] = answer.get("epoch"), answer.get("offset")
                except ValueError:
                    rec[8] = data[:200].decode(errors="replace")
                if status not in (200, 202):
                    rec[8] = data[:200].decode(errors="replace")
            except HttpError as e:
                rec[4] = now()
                rec[8] = str(e)[:200]

    def dispatch(self, kind: str, target: str | None) -> None:
        node = self.rng.randrange(3)
        if self.queues[node].qsize() > 500:
            self.skipped_sends += 1
            return
        msgid = self.next_msgid
        self.next_msgid += 1
        self.queues[node].put_nowait((msgid, kind, target))

    async def unicast_loop(self) -> None:
        rate = self.args.send_rate
        next_t = now()
        while self.sending:
            next_t += self.rng.expovariate(rate)
            delay = next_t - now()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_t = now()  # do not burst to catch up after a stall
            if self.sending:
                self.dispatch("u", str(self.rng.randrange(self.args.ids)))

    async def broadcast_loop(self) -> None:
        while self.sending:
            await asyncio.sleep(self.args.broadcast_every)
            if self.sending:
                self.dispatch("b", None)

    # -- client workers ----------------------------------------------------------------

    def start_workers(self, n_procs: int, max_seconds: float) -> None:
        ctx = mp.get_context("spawn")
        urls = [f"ws://127.0.0.1:{n.ws_port}/websocket/" for n in self.nodes]
        stagger = min(5.0, self.warmup / 2)
        for k in range(n_procs):
            parent, child = ctx.Pipe()
            wcfg = {
                "seed": self.args.seed, "ids": self.args.ids, "urls": urls, "history": self.args.history_size > 0,
                "resume_share": self.args.resume_share,
                "clients": list(range(k, self.args.clients, n_procs)), "stagger": stagger,
                "out": str(self.run_dir / f"clients-{k}.pkl"), "max_seconds": max_seconds,
            }
            proc = ctx.Process(target=worker_main, args=(wcfg, child), daemon=True, name=f"soak-clients-{k}")
            proc.start()
            child.close()
            w = {"proc": proc, "pipe": parent, "ready": asyncio.Event(), "done": asyncio.Event(), "path": None,
                 "connected": 0, "lag_max": 0.0, "error": None}
            self.workers.append(w)
            asyncio.get_running_loop().add_reader(parent.fileno(), self.on_worker_pipe, w)

    def on_worker_pipe(self, w: dict) -> None:
        try:
            while w["pipe"].poll():
                msg = w["pipe"].recv()
                if msg[0] == "ready":
                    w["ready"].set()
                elif msg[0] == "status":
                    w["connected"], w["lag_max"] = msg[1], msg[2]
                elif msg[0] == "done":
                    w["path"] = msg[1]
                    w["done"].set()
                elif msg[0] == "error":
                    w["error"] = msg[1]
                    w["done"].set()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(w["pipe"].fileno())
            w["done"].set()

    def set_mode(self, mode: str) -> None:
        for w in self.workers:
            try:
                w["pipe"].send(("mode", mode))
            except OSError:
                pass

    # -- holds -------------------------------------------------------------------------

    async def hold(self, label: str, timeout: float = 45.0) -> None:
        self.event(f"hold {label}: every client to its home node")
        self.set_mode("hold")
        t_start = now()
        share = [len(range(i, self.args.clients, 3)) for i in range(3)]
        streak, settled_t, last = 0, None, None
        while now() - t_start < timeout:
            counts = []
            for node in self.nodes:
                s = await self.stats(node) if node.alive() else None
                counts.append(None if s is None else s.get("connections"))
            last = counts
            clients = sum(w["connected"] for w in self.workers)
            if counts == share and clients == self.args.clients:
                streak += 1
                if streak >= 3:
                    settled_t = now()
                    break
            else:
                streak = 0
            await asyncio.sleep(0.5)
        result = {"t": self.rel(t_start), "share": share, "settled_after": None, "last_connections": last, "nodes": {}}
        if settled_t is None:
            self.event(f"hold {label}: population did NOT settle in {timeout:.0f}s (node connections {last}, expected {share})")
        else:
            result["settled_after"] = round(settled_t - t_start, 2)
        per = {n.name: [] for n in self.nodes}
        for _ in range(5):
            for node in self.nodes:
                if node.alive():
                    pid = node.current.proc.pid
                    per[node.name].append((proc_rss_kb(pid), proc_fds(pid)))
            await asyncio.sleep(1.0)
        for node in self.nodes:
            vals = [v for v in per[node.name] if v[0] is not None and v[1] is not None]
            if vals:
                result["nodes"][node.name] = {
                    "gen": node.current.gen,
                    "rss_kb": int(statistics.median(v[0] for v in vals)),
                    "fds": int(statistics.median(v[1] for v in vals)),
                    "rss_kb_all": [v[0] for v in vals],
                    "fds_all": [v[1] for v in vals],
                }
        self.holds[label] = result
        desc = ", ".join(f"{k}: rss {v['rss_kb']} kB fds {v['fds']}" for k, v in result["nodes"].items())
        self.event(f"hold {label}: settled after {result['settled_after']}s; {desc}")
        self.set_mode("churn")

    # -- faults ------------------------------------------------------------------------

    async def redis_outage(self, index: int) -> None:
        if self.args.redis_cluster:
            return await self.cluster_master_outage(index)
        self.event(f"redis kill -9 ({index})")
        kill_t = self.kill_redis()
        await asyncio.sleep(self.redis_down)
        t = now()
        await self.start_redis()
        restart_t = now()
        self.event(f"redis restarted ({index}), answered PING {restart_t - t:.2f}s after spawn")
        alive = [n for n in self.nodes if n.alive()]
        healed = await self.wait_healthy(alive, 30)
        self.event(f"redis outage {index} healed: " + ", ".join(
            f"{k} ok {v - restart_t:.2f}s after restart" if v else f"{k} NOT ok" for k, v in healed.items()))
        self.redis_outages.append({"index": index, "kill": kill_t, "restart": restart_t, "healed": healed})

    async def cluster_master_outage(self, index: int) -> None:
        """A master killed (-9): the outage lasts until its replica is promoted (the `restart`
        of the checks) and the nodes are healthy again; the killed node comes back as a
        replica after the usual down time."""
        kill_t = self.kill_redis()
        self.event(f"redis cluster master 127.0.0.1:{self.cluster_victim} kill -9 ({index})")
        promoted_t = await self.wait_promoted(30)
        if promoted_t is None:
            raise RuntimeError("no replica took over the killed master's slots within 30 s")
        self.event(f"replica promoted ({index}) {promoted_t - kill_t:.2f}s after the kill")
        alive = [n for n in self.nodes if n.alive()]
        healed = await self.wait_healthy(alive, 30)
        self.event(f"redis outage {index} healed: " + ", ".join(
            f"{k} ok {v - promoted_t:.2f}s after the promotion" if v else f"{k} NOT ok" for k, v in healed.items()))
        self.redis_outages.append({"index": index, "kill": kill_t, "restart": promoted_t, "healed": healed})
        await asyncio.sleep(max(0.0, kill_t + self.redis_down - now()))
        await self.start_redis()
        self.event(f"killed master restarted as a replica ({index})")

    async def node_c_outage(self) -> None:
        c = self.nodes[2]
        self.event("node c kill -9")
        kill_t = self.kill_node(c)
        await asyncio.sleep(self.c_down)
        await self.start_node(c)
        start_t = c.current.start_t
        self.event("node c restarted on the same ports")
        healed = await self.wait_healthy([c], 30, since=start_t)
        t_ok = healed["c"]
        self.event(f"node c healthy {t_ok - start_t:.2f}s after its start" if t_ok else "node c NOT healthy after restart")
        self.c_outage = {"kill": kill_t, "start": start_t, "healed": t_ok}

    async def sleep_until(self, t_rel: float) -> None:
        delay = self.t0 + t_rel - now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def schedule(self) -> None:
        D = self.args.duration
        await self.sleep_until(self.warmup)
        await self.hold("1-baseline")
        await self.sleep_until(max(0.2 * D, now() - self.t0 + 2))
        await self.redis_outage(1)
        await self.sleep_until(max(0.4 * D, now() - self.t0 + 2))
        await self.node_c_outage()
        await self.sleep_until(self.c_outage["start"] - self.t0 + self.warmup)
        await self.hold("2-node-c-baseline")
        await self.sleep_until(max(0.6 * D, now() - self.t0 + 2))
        await self.redis_outage(2)
        last_heal = max([v for v in self.redis_outages[-1]["healed"].values() if v] or [now()])
        await self.sleep_until(max(D - 15, last_heal - self.t0 + 10))
        await self.hold("3-end")

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> int:
        args = self.args
        D = args.duration
        self.warmup = max(10.0, 0.1 * D)
        self.redis_down = min(8.0, max(3.0, 0.1 * D))
        self.c_down = min(5.0, max(3.0, 0.1 * D))
        log(f"run directory {self.run_dir}")
        await self.start_redis()
        for node in self.nodes:
            await self.start_node(node)
        bg = [asyncio.create_task(self.health_loop(n)) for n in self.nodes]
        healed = await self.wait_healthy(self.nodes, 20)
        if not all(healed.values()):
            raise RuntimeError(f"the nodes did not become healthy: {healed}")
        n_procs = args.client_procs or (1 if args.clients <= 2000 else 2)
        self.start_workers(n_procs, max_seconds=D + 90)
        for w in self.workers:
            await asyncio.wait_for(w["ready"].wait(), 60)
        self.t0 = now()
        self.event(
            f"start: {args.clients} clients in {n_procs} process(es), {args.ids} ids, {args.send_rate}/s unicast, "
            f"broadcast every {args.broadcast_every}s; warm-up {self.warmup:.0f}s, Redis down {self.redis_down:.0f}s "
            f"per outage, node c down {self.c_down:.0f}s"
        )
        self.set_mode("churn")
        self.sending = True
        bg += [asyncio.create_task(self.sample_loop()), asyncio.create_task(self.stats_loop()),
               asyncio.create_task(self.progress_loop())]
        bg += [asyncio.create_task(self.sender_conn(n, k)) for n in self.nodes for k in range(SENDER_CONNS_PER_NODE)]
        bg += [asyncio.create_task(self.unicast_loop()), asyncio.create_task(self.broadcast_loop())]
        schedule_error = None
        try:
            await asyncio.wait_for(self.schedule(), D + 70)
        except asyncio.TimeoutError:
            schedule_error = "the fault schedule did not finish in time"
            self.event(schedule_error)
        # Stop sending, let the in-flight requests answer, let deliveries land.
        self.sending = False
        deadline = now() + 12
        while now() < deadline and (any(not q.empty() for q in self.queues) or any(s[4] is None for s in self.sends.values())):
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE + 1)
        self.end_sends_t = now()
        for node in self.nodes:
            if node.alive():
                s = await self.stats(node)
                if s is not None:
                    node.current.last_stats = s
        alive_before_stop = {n.name: (n.current.proc.poll() is None) for n in self.nodes}
        if args.history_size:
            await self.fetch_history()
        self.event("stopping the clients")
        self.set_mode("stop")
        for w in self.workers:
            try:
                await asyncio.wait_for(w["done"].wait(), 60)
            except asyncio.TimeoutError:
                w["error"] = "did not report within 60 s"
        for t in bg:
            t.cancel()
        await asyncio.gather(*bg, return_exceptions=True)
        exit_codes = {}
        for node in self.nodes:
            for h in [*node.senders, node.health_http, node.stats_http]:
                h.close()
            cur = node.current
            if cur.proc.poll() is None:
                cur.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                exit_codes[node.name] = node.current.proc.wait(15)
            except subprocess.TimeoutExpired:
                exit_codes[node.name] = "no exit within 15 s of SIGTERM"
                node.current.proc.kill()
        for proc in [self.redis_proc, *self.cluster_procs.values()]:
            if proc is not None:
                proc.kill()
                proc.wait(5)
        self.event("everything stopped; analysing")
        report = self.analyse(alive_before_stop, exit_codes, schedule_error)
        return self.output(report)

    async def fetch_history(self) -> None:
        """Every id's history as Redis holds it (GET /history/{id}, 1,000 a page, from the
        oldest kept): the ground truth of positions, 202 sends included."""
        t = now()
        http = Http(self.nodes[0].api_port)
        for k in range(self.args.ids):
            cid = str(k)
            entries: dict[tuple[str, int], int] = {}
            since, top, epoch, oldest = None, None, None, None
            for _ in range(1000):
                path = f"/history/{cid}?limit=1000" + (f"&since={since}" if since else "")
                answer = None
                for attempt in range(5):
                    try:
                        status, data = await http.request("GET", path, timeout=10)
                        if status == 200:
                            answer = json.loads(data)
                            break
                        err = f"{status} {data[:100]!r}"
                    except (HttpError, ValueError) as e:
                        err = str(e)
                    await asyncio.sleep(0.5)
                if answer is None:
                    self.history_fetch_errors.append(f"GET {path}: {err}")
                    break
                epoch, top = answer["epoch"], answer["offset"]
                if since and not answer["recovered"]:
                    self.history_fetch_errors.append(f"GET {path}: not recovered (trimmed while reading?)")
                    break
                msgs = answer["messages"]
                for e in msgs:
                    text = e.get("text") or ""
                    if text.startswith("m:"):
                        entries[(epoch, e["offset"])] = int(text[2:])
                if msgs and oldest is None:
                    oldest = msgs[0]["offset"]
                if not msgs or msgs[-1]["offset"] >= top:
                    break
                since = f"{epoch}:{msgs[-1]['offset']}"
            self.history_log[cid] = {"epoch": epoch, "top": top, "oldest": oldest, "entries": entries}
        http.close()
        self.event(f"read every id's history from Redis in {now() - t:.1f}s "
                   f"({sum(len(v['entries']) for v in self.history_log.values())} messages)")

    # -- analysis ----------------------------------------------------------------------

    def load_clients(self) -> tuple[list, dict]:
        recs, info = [], {"connect_failures": collections.Counter(), "failure_kinds": collections.Counter(),
                          "lag_max": 0.0, "lag_over_half": 0, "unfinished_clients": 0, "client_errors": [],
                          "cpu_seconds": [], "worker_errors": []}
        for w in self.workers:
            if w["error"]:
                info["worker_errors"].append(w["error"])
            if not w["path"]:
                info["worker_errors"].append("a client process did not report its results")
                continue
            with open(w["path"], "rb") as f:
                res = pickle.load(f)
            epochs = res.get("epochs", [])
            for r in res["recs"]:
                msgs = array.array("q")
                msgs.frombytes(r[8])
                times = array.array("d")
                times.frombytes(r[9])
                offs = array.array("q")
                offs.frombytes(r[15])
                eps = array.array("i")
                eps.frombytes(r[16])
                recs.append(
                    {"client": r[0], "id": r[1], "node": r[2], "t_try": r[3], "t_open": r[4], "t_close": r[5],
                     "t_end": r[6], "code": r[7], "msgs": msgs, "times": times, "other": r[10], "err": r[11],
                     "dropped": r[12], "since": r[13], "proto": r[14], "offs": offs,
                     "eps": [epochs[i] if i >= 0 else None for i in eps], "ctl": r[17]}
                )
            info["connect_failures"].update({int(k): v for k, v in res["connect_failures"].items()})
            info["failure_kinds"].update(res["failure_kinds"])
            info["lag_max"] = max(info["lag_max"], res["lag_max"])
            info["lag_over_half"] += res["lag_over_half"]
            info["unfinished_clients"] += res["unfinished_clients"]
            info["client_errors"] += res["client_errors"]
            info["cpu_seconds"].append(round(res["cpu_seconds"], 1))
        return recs, info

    def analyse(self, alive_before_stop: dict, exit_codes: dict, schedule_error: str | None) -> dict:
        started = now()
        # The raw logs, for post-mortems (times are time.monotonic(); t0 is the start).
        with open(self.run_dir / "orchestrator.pkl", "wb") as f:
            pickle.dump({"t0": self.t0, "node_names": NODE_NAMES,
                         "sends_fields": ["kind", "target", "node", "start", "end", "status", "answer_nodes",
                                          "answer_sockets", "error", "epoch", "offset"],
                         "sends": self.sends, "history_log": self.history_log, "health": self.health, "samples": self.samples,
                         "stats_series": self.stats_series, "events": self.events, "holds": self.holds},
                        f, protocol=pickle.HIGHEST_PROTOCOL)
        report = self._analyse(alive_before_stop, exit_codes, schedule_error)
        report["analysis_seconds"] = round(now() - started, 1)
        log(f"analysis took {report['analysis_seconds']}s")
        return report

    def _analyse(self, alive_before_stop: dict, exit_codes: dict, schedule_error: str | None) -> dict:
        args = self.args
        checks: dict[str, dict] = {}
        recs, cinfo = self.load_clients()

        # Where each node generation was alive, to cap a socket's end at its node's death.
        def node_death(node_index: int, t_open: float) -> float | None:
            for g in self.nodes[node_index].gens:
                if g.start_t <= t_open and g.kill_t is not None and t_open <= g.kill_t:
                    return g.kill_t
            return None

        for r in recs:
            end = r["t_close"] if r["t_close"] is not None else r["t_end"]
            death = node_death(r["node"], r["t_open"])
            if death is not None and end is not None:
                end = min(end, death)
            r["end"] = end
            r["counts"] = collections.Counter(r["msgs"])
            r["hist"] = self.walk_positions(r) if args.history_size else None

        hist = args.history_size > 0
        # With history a unicast answered 202 (queued while Redis was unreachable) is accepted too.
        sends_ok = {m: s for m, s in self.sends.items() if s[5] == 200 or (hist and s[5] == 202 and s[0] == "u")}
        failed = {m: s for m, s in self.sends.items() if m not in sends_ok}

        # Outage windows per path.
        def redis_window(o: dict, a: int, b: int) -> tuple[float, float]:
            ends = [o["healed"].get(self.nodes[a].name), o["healed"].get(self.nodes[b].name)]
            end = max([e for e in ends if e is not None] or [self.end_sends_t])
            if any(e is None for e in ends):
                end = self.end_sends_t
            return o["kill"], end

        def excuse(s: list, k_node: int) -> str | None:
            if k_node == s[2]:
                return None
            lo, hi = s[3] - SETTLE, s[4] + SETTLE
            for o in self.redis_outages:
                a, b = redis_window(o, s[2], k_node)
                if lo <= b and hi >= a:
                    phase = "at the kill" if s[3] < o["kill"] else "while down" if s[4] <= o["restart"] else "reconnecting"
                    return f"redis outage {o['index']}, sent {phase}"
            if self.c_outage and 2 in (s[2], k_node):
                a = self.c_outage["kill"]
                b = self.c_outage["healed"] or self.end_sends_t
                if lo <= b and hi >= a:
                    phase = "at the kill" if s[3] < a else "while starting"
                    return f"node c restart, sent {phase}"
            return None

        broadcasts = sorted((s[3], m) for m, s in sends_ok.items() if s[0] == "b")
        b_starts = [t for t, _ in broadcasts]

        required = delivered_required = 0
        excused_expected = collections.Counter()
        excused_missed = collections.Counter()
        excused_examples: dict[str, list] = collections.defaultdict(list)
        missing_required: list[dict] = []
        dup_in_expected = 0
        local_during_redis_down = [0, 0]
        expected_pairs: set[tuple[int, int]] = set()

        def in_redis_outage(s: list) -> bool:
            return any(s[3] <= (o["restart"]) and s[4] >= o["kill"] for o in self.redis_outages)

        def judge(m: int, s: list, ri: int, r: dict) -> None:
            nonlocal required, delivered_required, dup_in_expected
            expected_pairs.add((ri, m))
            count = r["counts"].get(m, 0)
            if count > 1:
                dup_in_expected += 1
            cause = excuse(s, r["node"])
            if cause is None:
                required += 1
                if r["node"] == s[2] and in_redis_outage(s):
                    local_during_redis_down[0] += 1
                    local_during_redis_down[1] += count >= 1
                if count >= 1:
                    delivered_required += 1
                elif len(missing_required) < 10000:
                    missing_required.append({"msgid": m, "kind": s[0], "target": s[1], "sent_via": NODE_NAMES[s[2]],
                                             "start": self.rel(s[3]), "end": self.rel(s[4]), "answer_nodes": s[6],
                                             "answer_sockets": s[7], "socket_client": r["client"],
                                             "socket_node": NODE_NAMES[r["node"]], "socket_open": self.rel(r["t_open"]),
                                             "socket_close": self.rel(r["end"])})
            else:
                excused_expected[cause] += 1
                if count == 0:
                    excused_missed[cause] += 1
                    if len(excused_examples[cause]) < 5:
                        excused_examples[cause].append({"send": self.describe_send(m), "socket_client": r["client"],
                                                        "socket_node": NODE_NAMES[r["node"]],
                                                        "socket_open": self.rel(r["t_open"]), "socket_close": self.rel(r["end"])})

        # Unicast: per id, the sends sorted by start; each socket looks up those in its window.
        unicast_by_id: dict[str, list] = collections.defaultdict(list)
        for m, s in sends_ok.items():
            if s[0] == "u":
                unicast_by_id[s[1]].append((s[3], m))
        for v in unicast_by_id.values():
            v.sort()
        unicast_starts = {k: [t for t, _ in v] for k, v in unicast_by_id.items()}
        H = None
        if hist:
            H = self.analyse_history(recs, sends_ok, unicast_by_id, unicast_starts, expected_pairs, redis_window)
            required += H["required"]
            delivered_required += H["delivered"]
            missing_required += H["missing"]
        for ri, r in enumerate(recs):
            if r["end"] is None:
                continue
            lst = None if hist else unicast_by_id.get(r["id"])
            if lst:
                i = bisect.bisect_left(unicast_starts[r["id"]], r["t_open"] + SETTLE)
                while i < len(lst) and lst[i][0] <= r["end"] - SETTLE:
                    m = lst[i][1]
                    s = sends_ok[m]
                    if s[4] + SETTLE <= r["end"]:
                        judge(m, s, ri, r)
                    i += 1
            # A v1 socket is live (gets live-only messages) from its `!pos`.
            live_from = r["hist"]["t_pos"] if hist else r["t_open"]
            if live_from is None:
                continue
            i = bisect.bisect_left(b_starts, live_from + SETTLE)
            while i < len(broadcasts) and broadcasts[i][0] <= r["end"] - SETTLE:
                m = broadcasts[i][1]
                s = sends_ok[m]
                if s[4] + SETTLE <= r["end"]:
                    judge(m, s, ri, r)
                i += 1

        # Everything received: duplicates, strays, unknown messages.
        total_received = duplicates = misrouted = unknown = from_failed = unexpected_ok = redelivered_after_lost = 0
        dup_examples, stray_examples = [], []
        for ri, r in enumerate(recs):
            for m, c in r["counts"].items():
                total_received += c
                if c > 1 and hist and args.redis_persistence == "none" and \
                        len({e for mm, e in zip(r["msgs"], r["eps"]) if mm == m}) == c and r["hist"]["lost"]:
                    # Without persistence: once in the epoch Redis lost, once in the new one after
                    # the !lost (a pipeline in flight at the kill, resent).
                    redelivered_after_lost += c - 1
                elif c > 1:
                    duplicates += c - 1
                    if len(dup_examples) < 20:
                        s = self.sends.get(m)
                        dup_examples.append({"msgid": m, "times": c, "socket_client": r["client"], "socket_id": r["id"],
                                             "socket_node": NODE_NAMES[r["node"]], "send": self.describe_send(m)})
                s = self.sends.get(m)
                if s is None:
                    unknown += c
                    if len(stray_examples) < 20:
                        stray_examples.append({"msgid": m, "socket_id": r["id"], "why": "never sent"})
                    continue
                if s[0] == "u" and s[1] != r["id"]:
                    misrouted += c
                    if len(stray_examples) < 20:
                        stray_examples.append({"msgid": m, "socket_id": r["id"], "why": "for another id",
                                               "send": self.describe_send(m)})
                    continue
                if m not in sends_ok:
                    from_failed += 1
                elif (ri, m) not in expected_pairs:
                    unexpected_ok += 1
            if r["other"]:
                unknown += len(r["other"])
                if len(stray_examples) < 20:
                    stray_examples.append({"socket_id": r["id"], "why": "unexpected payload", "data": r["other"]})

        checks["1 exactly once (required deliveries)"] = {
            "ok": required > 0 and delivered_required == required and dup_in_expected == 0,
            "detail": f"{delivered_required}/{required} required deliveries arrived"
                      + (f", {len(missing_required)} missing" if missing_required else "")
                      + (f", {dup_in_expected} arrived more than once" if dup_in_expected else ""),
        }
        checks["2 no duplicates, strays or unknown messages"] = {
            "ok": duplicates == 0 and misrouted == 0 and unknown == 0,
            "detail": f"{duplicates} duplicates, {misrouted} for another id, {unknown} unknown, over {total_received} received"
                      + (f" ({redelivered_after_lost} again in the new epoch after a !lost, allowed without persistence)"
                         if redelivered_after_lost else ""),
        }

        # Counters: the last /stats of every node process.
        counters = {}
        for node in self.nodes:
            for g in node.gens:
                c = (g.last_stats or {}).get("cluster") or {}
                counters[f"{node.name}{g.gen}"] = {k: c.get(k) for k in (
                    "published", "publish_failed", "publish_dropped", "delivery_dropped", "received", "own_skipped",
                    "reconnects", "malformed_envelopes", "subscribe_commands", "unsubscribe_commands", "history_appends",
                    "history_append_retried", "history_append_duplicates", "history_reads", "history_read_failed")}
                top = g.last_stats or {}
                for k in ("history_duplicates", "history_gap_fills", "history_lost_signals", "history_resumes",
                          "history_replayed"):
                    counters[f"{node.name}{g.gen}"][k] = top.get(k)
                counters[f"{node.name}{g.gen}"]["stats_at"] = self.rel(
                    max([t for t, gen, *_ in self.stats_series[node.index] if gen == g.gen] or [0.0]) or None)
        overflow = {k: (v["publish_dropped"], v["delivery_dropped"]) for k, v in counters.items()
                    if (v["publish_dropped"] or 0) or (v["delivery_dropped"] or 0)}
        checks["3 misses only in outages, counted; no queue overflow"] = {
            "ok": not missing_required and not overflow,
            "detail": f"excused misses {dict(excused_missed) or 0} of {dict(excused_expected) or 0} excused-expected; "
                      f"publish_failed {sum((v['publish_failed'] or 0) for v in counters.values())}"
                      + (f"; OVERFLOW (publish_dropped, delivery_dropped) {overflow}" if overflow else ""),
        }

        # Processes.
        problems = []
        for node in self.nodes:
            if not alive_before_stop[node.name]:
                problems.append(f"node {node.name} (gen {node.current.gen}) exited on its own: code {node.current.proc.returncode}")
            if exit_codes.get(node.name) != 0:
                problems.append(f"node {node.name} exit on SIGTERM: {exit_codes.get(node.name)}")
            for g in node.gens:
                err = (self.run_dir / f"node-{node.name}-{g.gen}.stderr").read_text(errors="replace")
                if "panicked" in err:
                    line = next(l for l in err.splitlines() if "panicked" in l)
                    problems.append(f"node {node.name}-{g.gen} stderr: {line[:300]}")
        checks["4 no crash, no panic, clean exit"] = {"ok": not problems, "detail": "; ".join(problems) or
                                                      f"nodes alive until stopped, exit codes {exit_codes}, no panic"}

        # Resources.
        res_problems, resources = [], {}
        h1, h2, h3 = self.holds.get("1-baseline"), self.holds.get("2-node-c-baseline"), self.holds.get("3-end")
        for label, h in self.holds.items():
            if h["settled_after"] is None:
                res_problems.append(f"hold {label}: population did not settle (node connections {h['last_connections']}, "
                                    f"expected {h['share']})")
        for node in self.nodes:
            base_hold = h2 if node.name == "c" else h1
            base = (base_hold or {}).get("nodes", {}).get(node.name)
            end = (h3 or {}).get("nodes", {}).get(node.name)
            entry = {"baseline": base and {"rss_kb": base["rss_kb"], "fds": base["fds"]},
                     "end": end and {"rss_kb": end["rss_kb"], "fds": end["fds"]}}
            if node.name != "c" and h2 and node.name in h2["nodes"]:
                entry["mid"] = {"rss_kb": h2["nodes"][node.name]["rss_kb"], "fds": h2["nodes"][node.name]["fds"]}
            if not base or not end:
                res_problems.append(f"node {node.name}: missing measurement")
            else:
                for key in ("rss_kb", "fds"):
                    change = (end[key] - base[key]) / base[key]
                    entry[f"{key}_change"] = round(change, 4)
                    if abs(change) > TOLERANCE:
                        res_problems.append(f"node {node.name} {key} {base[key]} -> {end[key]} ({change:+.1%})")
            resources[node.name] = entry
        checks["5 RSS and fds back within 10%"] = {"ok": not res_problems, "detail": "; ".join(res_problems) or
                                                  "all within 10% at the same population"}

        # Health.
        health_problems, transitions = self.check_health()
        checks["6 /healthz degraded exactly while Redis down"] = {"ok": not health_problems,
                                                                 "detail": "; ".join(health_problems) or "as expected"}

        if H is not None:
            problems = []
            if H["n_anomalies"]:
                problems.append(f"{H['n_anomalies']} position anomalies (gaps, repeats, steps back)")
            if H["n_conflicts"]:
                problems.append(f"{H['n_conflicts']} conflicts between positions (two messages at one position, or one "
                                f"message at two)")
            if H["n_not_told"]:
                problems.append(f"{H['n_not_told']} sockets live across a Redis restart without persistence got no !lost")
            if H["lost"]:
                behind = [x for x in H["lost"] if x.get("behind_by")]
                problems.append(f"{len(H['lost'])} !lost signals "
                                + ("(Redis runs with AOF: none may come)" if H["persistence"] == "aof" else "in the same epoch")
                                + (f", {len(behind)} of them in the same epoch BEHIND the socket's position (the client "
                                   f"is sent again {sum(x['behind_by'] for x in behind)} messages it had)" if behind else ""))
            if H["pos_late"]:
                problems.append(f"{len(H['pos_late'])} sockets without !pos within {POS_WITHIN:.0f}s of their open, "
                                f"no outage near")
            if H["n_not_v1"]:
                problems.append(f"{H['n_not_v1']} sockets without {V1}")
            if H["redis_gaps"] or H["fetch_errors"]:
                problems.append(f"Redis's histories: gaps {H['redis_gaps'][:3]}, read errors {H['fetch_errors'][:3]}")
            if H["persistence"] == "aof" and (H["epochs_per_id"] > 1 or H["distinct_epochs"] != len(self.history_log)):
                problems.append(f"epochs changed ({H['distinct_epochs']} epochs for {len(self.history_log)} ids)")
            checks["7 history: one order, contiguous offsets per socket, no !lost"] = {
                "ok": not problems,
                "detail": "; ".join(problems) or
                          f"{H['history_messages']} positioned messages in Redis, every socket's offsets contiguous, "
                          + ("no !lost" if H["persistence"] == "aof" else
                             f"{H['lost_new_epoch']} !lost to a new epoch, every socket live across a restart told, "
                             f"{H['reappended_after_loss']} sends re-appended after the loss")
                          + f", !pos within {H['pos_latency_max']}s of the open away from outages "
                          f"({H['pos_late_near_outage']} later near an outage)",
            }
            lost_sends = len(H["not_appended"]) + len(H["not_in_redis"])
            checks["8 history: every accepted send appended exactly once (200 and 202)"] = {
                "ok": lost_sends == 0 and not H["n_conflicts"],
                "detail": (f"{len(H['not_appended'])} accepted sends never appended, {len(H['not_in_redis'])} with a "
                           f"position missing from Redis; " if lost_sends else "")
                          + f"{H['accepted_202']} answered 202 ({H['accepted_202_at_kill']} in flight at a Redis kill), "
                            f"all appended once",
            }
            rq, rd = H["kinds"].get("replay", 0), H["kinds_delivered"].get("replay", 0)
            resumed_missing = sum(1 for x in H["missing"] if x["socket_since"])
            checks["9 history: resumed sockets got everything after since, exactly once"] = {
                "ok": (H["resumes"] > 0 or not args.resume_share) and resumed_missing == 0 and not H["lost"],
                "detail": f"{H['resumes']} resumes ({H['resumes_other_node']} to another node, {H['resumes_live']} reached "
                          f"!pos), {H['replayed_frames']} frames replayed (at most {H['replay_max']} in one); replay: "
                          f"{rd}/{rq} required delivered; {resumed_missing} missing on resumed sockets",
            }

        harness = []
        if cinfo["worker_errors"]:
            harness += cinfo["worker_errors"]
        if cinfo["unfinished_clients"]:
            harness.append(f"{cinfo['unfinished_clients']} client tasks did not finish")
        if cinfo["client_errors"]:
            harness.append(f"client task errors: {cinfo['client_errors'][:3]}")
        if schedule_error:
            harness.append(schedule_error)
        if len(self.redis_outages) != 2 or not self.c_outage:
            harness.append("not every fault was injected")
        if harness:
            checks["0 harness ran the whole schedule"] = {"ok": False, "detail": "; ".join(harness)}

        n_uni = sum(1 for s in sends_ok.values() if s[0] == "u")
        n_b = len(sends_ok) - n_uni
        return {
            "ok": all(c["ok"] for c in checks.values()),
            "checks": checks,
            "run_dir": str(self.run_dir),
            "config": {"duration": args.duration, "clients": args.clients, "ids": args.ids, "send_rate": args.send_rate,
                       "broadcast_every": args.broadcast_every, "seed": args.seed, "settle": SETTLE,
                       "warmup": self.warmup, "redis_down": self.redis_down, "node_c_down": self.c_down,
                       "client_procs": len(self.workers), "history_size": args.history_size,
                       "redis_persistence": args.redis_persistence if args.history_size else None,
                       "resume_share": args.resume_share if args.history_size else None},
            "elapsed": round(now() - self.t0, 1),
            "sends": {"unicast_ok": n_uni, "unicast_202": sum(1 for s in sends_ok.values() if s[5] == 202),
                      "broadcast_ok": n_b, "failed": len(failed), "skipped_backlog": self.skipped_sends,
                      "answered_nodes_null": sum(1 for s in sends_ok.values() if s[6] is None),
                      "failed_examples": [self.describe_send(m) for m in list(failed)[:5]]},
            "sockets": {"connections": len(recs), "dropped_by_server_or_kill": sum(1 for r in recs if r["dropped"]),
                        "connect_failures": {NODE_NAMES[k]: v for k, v in sorted(cinfo["connect_failures"].items())},
                        "connect_failure_kinds": dict(cinfo["failure_kinds"]),
                        "close_codes": dict(collections.Counter(str(r["code"]) for r in recs).most_common(6)),
                        "client_loop_lag_max": round(cinfo["lag_max"], 3),
                        "client_loop_lag_over_0.5s": cinfo["lag_over_half"],
                        "client_cpu_seconds": cinfo["cpu_seconds"]},
            "deliveries": {"received": total_received, "required": required, "required_delivered": delivered_required,
                           "local_required_while_redis_down": local_during_redis_down[0],
                           "local_delivered_while_redis_down": local_during_redis_down[1],
                           "excused_expected": dict(excused_expected), "excused_missed": dict(excused_missed),
                           "not_expected_but_delivered_once": unexpected_ok, "from_failed_posts": from_failed,
                           "duplicates": duplicates, "misrouted": misrouted, "unknown": unknown},
            "history": H and {k: v for k, v in H.items() if k != "missing"},
            "excused_miss_examples": dict(excused_examples),
            "missing_examples": missing_required[:30],
            "missing_total": len(missing_required),
            "duplicate_examples": dup_examples,
            "stray_examples": stray_examples,
            "counters": counters,
            "resources": resources,
            "holds": self.holds,
            "health": transitions,
            "faults": {
                "redis": [{"index": o["index"], "kill": self.rel(o["kill"]), "restart": self.rel(o["restart"]),
                           "healed": {k: self.rel(v) for k, v in o["healed"].items()}} for o in self.redis_outages],
                "node_c": self.c_outage and {k: self.rel(v) for k, v in self.c_outage.items()},
            },
            "events": [(self.rel(t), w) for t, w in self.events],
            "cpu_seconds": {f"{n.name}{g.gen}": self.last_cpu(n, g.gen) for n in self.nodes for g in n.gens},
        }

    # -- history (--history-size N > 0) -------------------------------------------------

    def walk_positions(self, r: dict) -> dict:
        """One v1 socket's positions in order: where it started (its `since`, else its first
        `!pos`), the runs of contiguous offsets it received, and every anomaly (a gap, a
        repeat, a step back, a `!pos` that is not where it was, a `!lost`)."""
        w = {"t_pos": None, "start": None, "segs": [], "anomalies": [], "lost": [], "replayed": 0}
        cur = None
        if r["since"]:
            e, _, o = r["since"].rpartition(":")
            cur = (e, int(o))
            w["start"] = cur
            w["segs"].append([e, cur[1], cur[1]])
        ctl, ci = r["ctl"], 0
        msgs, offs, eps = r["msgs"], r["offs"], r["eps"]

        def control(c) -> None:
            nonlocal cur
            kind, e, o, t, _ = c
            if kind == "pos":
                if w["t_pos"] is None:
                    w["t_pos"] = t
                if cur is None:
                    cur = (e, o)
                    w["start"] = cur
                    w["segs"].append([e, o, o])
                elif cur != (e, o):
                    w["anomalies"].append(f"!pos {e}:{o} after {cur[0]}:{cur[1]}")
                    cur = (e, o)
                    w["segs"].append([e, o, o])
            else:
                x = {"t": self.rel(t), "at": cur and f"{cur[0]}:{cur[1]}", "lost": f"{e}:{o}", "from": cur, "to": (e, o),
                     "t_abs": t}
                if cur and cur[0] == e and o < cur[1]:
                    # Not a loss: Redis still had the history (same epoch); the node's own
                    # position was behind the client's, and it now delivers again what the
                    # client had.
                    x["behind_by"] = cur[1] - o
                w["lost"].append(x)
                cur = (e, o)
                w["segs"].append([e, o, o])

        for k in range(len(msgs)):
            while ci < len(ctl) and ctl[ci][4] <= k:
                control(ctl[ci])
                ci += 1
            o = offs[k]
            if o < 0:
                continue
            e = eps[k]
            if w["t_pos"] is None and r["since"]:
                w["replayed"] += 1
            if cur is None:
                w["anomalies"].append(f"{e}:{o} (m:{msgs[k]}) before any position")
                cur = (e, o - 1)
                w["segs"].append([e, o - 1, o - 1])
            if e == cur[0] and o == cur[1] + 1:
                w["segs"][-1][2] = o
            else:
                what = ("a gap" if o > cur[1] + 1 else "a repeat or a step back") if e == cur[0] else "another epoch without !lost"
                w["anomalies"].append(f"{e}:{o} (m:{msgs[k]}) after {cur[0]}:{cur[1]}: {what}")
                w["segs"].append([e, o - 1, o])
            cur = (e, o)
        while ci < len(ctl):
            control(ctl[ci])
            ci += 1
        w["end_pos"] = cur
        return w

    def analyse_history(self, recs, sends_ok, unicast_by_id, unicast_starts, expected_pairs, redis_window) -> dict:
        """The checks with history on (see the module docstring, "With history")."""
        # One order: every (id, epoch, offset) holds one message, every message one position.
        aof = self.args.redis_persistence == "aof"
        at: dict[tuple, int] = {}
        pos_of: dict[int, tuple] = {}
        conflicts: list[str] = []
        n_conflicts = reappended = 0

        def note(cid: str, e: str, o: int, m: int, source: str) -> None:
            nonlocal n_conflicts, reappended
            key = (cid, e, o)
            prev = at.setdefault(key, m)
            if prev != m:
                n_conflicts += 1
                if len(conflicts) < 20:
                    conflicts.append(f"id {cid} {e}:{o} holds m:{prev} and m:{m} ({source})")
                return
            p = pos_of.setdefault(m, key)
            if p != key and not aof and p[1] != e:
                # Without persistence: applied in an epoch Redis then lost, resent (a pipeline
                # in flight at the kill) and applied again in the new one.
                reappended += 1
                pos_of[m] = max(p, key, key=lambda k: k in at and self.history_log.get(k[0], {}).get("epoch") == k[1])
            elif p != key:
                n_conflicts += 1
                if len(conflicts) < 20:
                    conflicts.append(f"m:{m} at {p[0]} {p[1]}:{p[2]} and {cid} {e}:{o} ({source}): appended twice")

        for m, s in self.sends.items():
            if s[0] == "u" and s[9] is not None and s[10] is not None:
                note(s[1], s[9], s[10], m, "POST answer")
        for cid, h in self.history_log.items():
            for (e, o), m in h["entries"].items():
                note(cid, e, o, m, "GET /history")
        for r in recs:
            for m, o, e in zip(r["msgs"], r["offs"], r["eps"]):
                if o >= 0:
                    note(r["id"], e, o, m, f"socket of client {r['client']}")
        redis_gaps = []
        for cid, h in self.history_log.items():
            if h["top"] and h["oldest"] is not None:
                held = sum(1 for (e, o) in h["entries"] if e == h["epoch"])
                if held != h["top"] - h["oldest"] + 1:
                    redis_gaps.append(f"id {cid}: {held} messages from {h['oldest']} to {h['top']}")
        epochs = collections.Counter(h["epoch"] for h in self.history_log.values())

        # Every accepted send (200 with its position, or 202) was appended, once.
        not_appended, not_in_redis = [], []
        n202 = n202_at_kill = 0
        kills = [o["kill"] for o in self.redis_outages]
        for m, s in sends_ok.items():
            if s[0] != "u":
                continue
            if s[5] == 202:
                n202 += 1
                n202_at_kill += any(s[3] <= k <= s[4] for k in kills)
            p = pos_of.get(m)
            if p is None:
                not_appended.append(self.describe_send(m))
                continue
            h = self.history_log.get(s[1])
            if h and h["epoch"] == p[1] and h["oldest"] is not None and h["oldest"] <= p[2] <= h["top"] \
                    and (p[1], p[2]) not in h["entries"]:
                not_in_redis.append(self.describe_send(m))

        def due(s: list, k_node: int) -> float:
            """When socket on k_node must have s: SETTLE after the answer, or, when the send's
            window touches a Redis outage, CATCHUP after both nodes are back."""
            lo, hi = s[3] - SETTLE, s[4] + SETTLE
            t = hi
            for o in self.redis_outages:
                a, b = redis_window(o, s[2], k_node)
                if lo <= b and hi >= a:
                    t = max(t, b + SETTLE + CATCHUP)
            return t

        def resume_due(r: dict) -> float:
            """When a resumed socket must have what was sent before it opened."""
            t = r["t_open"]
            for o in self.redis_outages:
                a, b = redis_window(o, r["node"], r["node"])
                if a - SETTLE <= t <= b:
                    t = b + CATCHUP
            c = self.c_outage
            if c and r["node"] == 2 and c["start"] - SETTLE <= t <= (c["healed"] or self.end_sends_t):
                t = (c["healed"] or self.end_sends_t) + CATCHUP
            return t + SETTLE

        def near_outage(r: dict, t0: float, t1: float) -> bool:
            for o in self.redis_outages:
                b = max([v for v in o["healed"].values() if v] or [self.end_sends_t])
                if t0 <= b + CATCHUP and t1 >= o["kill"] - 1:
                    return True
            c = self.c_outage
            return bool(c and r["node"] == 2 and t0 <= (c["healed"] or self.end_sends_t) + CATCHUP and t1 >= c["start"] - 1)

        required = delivered = 0
        kinds = collections.Counter()  # required by kind: live window / replay
        kinds_delivered = collections.Counter()
        missing: list[dict] = []
        excused = collections.Counter()
        not_due = not_due_delivered = 0
        anomalies, lost, pos_late, not_v1, not_told = [], [], [], [], []
        lost_new_epoch = 0
        n_anomalies = pos_late_near_outage = 0
        pos_latency_max = 0.0
        catchup_after_heal_max = live_latency_max = 0.0
        resumes = resumes_other_node = resumes_live = replayed = replay_max = 0
        prev_node: dict[int, int] = {}
        for r in sorted(recs, key=lambda r: (r["client"], r["t_open"])):
            if r["since"]:
                resumes += 1
                resumes_other_node += prev_node.get(r["client"], r["node"]) != r["node"]
            prev_node[r["client"]] = r["node"]

        for ri, r in enumerate(recs):
            w = r["hist"]
            if r["end"] is None:
                continue
            if r["proto"] != V1:
                not_v1.append(f"client {r['client']} on {NODE_NAMES[r['node']]}: subprotocol {r['proto']!r}")
                continue
            for a in w["anomalies"]:
                n_anomalies += 1
                if len(anomalies) < 20:
                    anomalies.append(f"client {r['client']} id {r['id']} on {NODE_NAMES[r['node']]} "
                                     f"(open {self.rel(r['t_open'])}, since {r['since']}): {a}")
            for x in w["lost"]:
                x = {k: v for k, v in x.items() if k not in ("from", "to", "t_abs")}
                entry = {"client": r["client"], "id": r["id"], "node": NODE_NAMES[r["node"]], "since": r["since"], **x}
                if aof or x["lost"].split(":")[0] == (x["at"] or ":").split(":")[0]:
                    lost.append(entry)  # a failure: with AOF any !lost, without persistence one in the same epoch
                else:
                    lost_new_epoch += 1
            if not aof and w["t_pos"] is not None:
                # Without persistence every socket live across a Redis restart is told, with no new message needed.
                for o in self.redis_outages:
                    b = o["healed"].get(NODE_NAMES[r["node"]]) or self.end_sends_t
                    if w["t_pos"] < o["kill"] and r["end"] > b + CATCHUP + SETTLE and \
                            not any(o["kill"] <= x["t_abs"] <= r["end"] for x in w["lost"]):
                        not_told.append(f"client {r['client']} id {r['id']} on {NODE_NAMES[r['node']]}: live across Redis "
                                        f"outage {o['index']}, no !lost")
            if r["since"]:
                replayed += w["replayed"]
                replay_max = max(replay_max, w["replayed"])
                resumes_live += w["t_pos"] is not None
            life = r["end"] - r["t_open"]
            if w["t_pos"] is None or w["t_pos"] - r["t_open"] > POS_WITHIN:
                if w["t_pos"] is not None or life > POS_WITHIN:
                    if near_outage(r, r["t_open"], r["t_open"] + POS_WITHIN):
                        pos_late_near_outage += 1
                    elif len(pos_late) < 20:
                        pos_late.append(f"client {r['client']} id {r['id']} on {NODE_NAMES[r['node']]}: open "
                                        f"{self.rel(r['t_open'])}, !pos {self.rel(w['t_pos'])}, end {self.rel(r['end'])}")
                    else:
                        pos_late.append("...")
            elif not near_outage(r, r["t_open"], w["t_pos"]):
                pos_latency_max = max(pos_latency_max, w["t_pos"] - r["t_open"])

            arrival = None

            def judge(m: int, s: list, kind: str, by: float) -> None:
                nonlocal required, delivered, not_due, not_due_delivered, arrival, catchup_after_heal_max, live_latency_max
                expected_pairs.add((ri, m))
                got = r["counts"].get(m, 0)
                if r["end"] < by:
                    not_due += 1
                    not_due_delivered += got > 0
                    return
                p = pos_of.get(m)
                if got == 0 and not aof and p:
                    # Without persistence: what Redis lost with its data is announced (!lost),
                    # not delivered: a message after the socket's position in the epoch it
                    # left, or up to its position in the new one.
                    for x in w["lost"]:
                        if (x["from"] and p[1] == x["from"][0] and p[2] > x["from"][1]) or \
                                (p[1] == x["to"][0] and p[2] <= x["to"][1] and x["to"][0] != (x["from"] or ("",))[0]):
                            if kind == "replay" or by > s[4] + SETTLE:
                                excused["lost with Redis's data (no persistence), announced by !lost"] += 1
                                return
                if got == 0 and not r["since"]:
                    start = w["start"]
                    if start is None:
                        excused["fresh socket never live (no !pos)"] += 1
                        return
                    if p and p[1] == start[0] and p[2] <= start[1] and w["t_pos"] >= s[3]:
                        near = "outage near" if near_outage(r, r["t_open"], w["t_pos"]) else "NO outage near"
                        excused[f"fresh socket, !pos after the send, {near}"] += 1
                        return
                required += 1
                kinds[kind] += 1
                if got:
                    delivered += 1
                    kinds_delivered[kind] += 1
                    if arrival is None:
                        arrival = dict(zip(r["msgs"], r["times"]))
                    t = arrival[m]
                    if by > s[4] + SETTLE:
                        catchup_after_heal_max = max(catchup_after_heal_max, t - (by - SETTLE - CATCHUP))
                    else:
                        live_latency_max = max(live_latency_max, t - s[4])
                elif len(missing) < 10000:
                    missing.append({"msgid": m, "kind": f"u ({kind})", "target": s[1], "status": s[5],
                                    "position": p and f"{p[1]}:{p[2]}", "sent_via": NODE_NAMES[s[2]],
                                    "start": self.rel(s[3]), "end": self.rel(s[4]), "due": self.rel(by),
                                    "socket_client": r["client"], "socket_node": NODE_NAMES[r["node"]],
                                    "socket_since": r["since"], "socket_open": self.rel(r["t_open"]),
                                    "socket_pos": self.rel(w["t_pos"]), "socket_close": self.rel(r["end"]),
                                    "socket_start": w["start"] and f"{w['start'][0]}:{w['start'][1]}",
                                    "socket_last": w["end_pos"] and f"{w['end_pos'][0]}:{w['end_pos'][1]}"})

            lst = unicast_by_id.get(r["id"])
            if not lst:
                continue
            # (a) every accepted send made while the socket was open (from SETTLE after its open).
            i = bisect.bisect_left(unicast_starts[r["id"]], r["t_open"] + SETTLE)
            first = i
            while i < len(lst) and lst[i][0] <= r["end"] - SETTLE:
                m = lst[i][1]
                s = sends_ok[m]
                judge(m, s, "live", due(s, r["node"]))
                i += 1
            # (b) a resumed socket: every accepted send positioned after its since, made before.
            if r["since"]:
                e0, o0 = w["start"]
                rdue = resume_due(r)
                for t, m in lst[:first]:
                    p = pos_of.get(m)
                    if p and p[1] == e0 and p[2] > o0:
                        s = sends_ok[m]
                        judge(m, s, "replay", max(rdue, due(s, r["node"])))

        return {
            "required": required, "delivered": delivered, "missing": missing, "kinds": dict(kinds),
            "kinds_delivered": dict(kinds_delivered), "excused": dict(excused), "not_due": not_due,
            "not_due_delivered": not_due_delivered, "conflicts": conflicts, "n_conflicts": n_conflicts,
            "redis_gaps": redis_gaps, "epochs_per_id": max(epochs.values(), default=0), "distinct_epochs": len(epochs),
            "history_messages": sum(len(h["entries"]) for h in self.history_log.values()),
            "fetch_errors": self.history_fetch_errors[:10], "not_appended": not_appended, "not_in_redis": not_in_redis,
            "accepted_202": n202, "accepted_202_at_kill": n202_at_kill, "anomalies": anomalies,
            "n_anomalies": n_anomalies, "lost": lost, "pos_late": pos_late, "pos_late_near_outage": pos_late_near_outage,
            "pos_latency_max": round(pos_latency_max, 3), "not_v1": not_v1[:20], "n_not_v1": len(not_v1),
            "live_latency_max": round(live_latency_max, 3), "catchup_after_heal_max": round(catchup_after_heal_max, 3),
            "resumes": resumes, "resumes_other_node": resumes_other_node, "resumes_live": resumes_live,
            "persistence": self.args.redis_persistence, "reappended_after_loss": reappended,
            "lost_new_epoch": lost_new_epoch, "not_told": not_told[:20], "n_not_told": len(not_told),
            "replayed_frames": replayed, "replay_max": replay_max,
            "fresh_sockets": sum(1 for r in recs if not r["since"]),
        }

    def last_cpu(self, node: Node, gen: int) -> float | None:
        vals = [s[4] for s in self.samples[node.index] if s[1] == gen and s[4] is not None]
        return round(vals[-1], 1) if vals else None

    def describe_send(self, m: int) -> dict | None:
        s = self.sends.get(m)
        if s is None:
            return None
        return {"msgid": m, "kind": s[0], "target": s[1], "node": NODE_NAMES[s[2]], "start": self.rel(s[3]),
                "end": self.rel(s[4]), "status": s[5], "answer_nodes": s[6], "answer_sockets": s[7], "error": s[8]}

    def check_health(self) -> tuple[list[str], dict]:
        problems, transitions = [], {}
        outages = [(o["index"], o["kill"], o["restart"]) for o in self.redis_outages]
        for node in self.nodes:
            polls = self.health[node.index]
            # Transitions (state changes) for the report.
            trans, prev = [], None
            for t, gen, code in polls:
                state = {200: "ok", 503: "degraded", 0: "unreachable"}.get(code, str(code))
                if state != prev:
                    trans.append((self.rel(t), gen, state))
                    prev = state
            transitions[node.name] = trans

            def alive_through(a: float, b: float) -> bool:
                return any(g.start_t <= a and (g.kill_t is None or g.kill_t >= b) for g in node.gens)

            allowed: list[tuple[float, float]] = []
            for idx, kill, restart in outages:
                o = next(x for x in self.redis_outages if x["index"] == idx)
                if not alive_through(kill - 1, restart + HEALED_WITHIN):
                    allowed.append((kill, restart + HEALED_WITHIN))
                    continue
                first_bad = next((t for t, g, c in polls if t >= kill and c == 503), None)
                if first_bad is None or first_bad > kill + DEGRADED_WITHIN:
                    problems.append(f"node {node.name}: degraded {'never' if first_bad is None else f'{first_bad - kill:.2f}s'}"
                                    f" after Redis kill {idx} (limit {DEGRADED_WITHIN:.0f}s)")
                    first_bad = first_bad or kill
                oks = [t for t, g, c in polls if first_bad < t < restart and c == 200]
                if oks:
                    problems.append(f"node {node.name}: ok at {self.rel(oks[0])}s while Redis was down (outage {idx})")
                first_ok = next((t for t, g, c in polls if t >= restart and c == 200), None)
                if first_ok is None or first_ok > restart + HEALED_WITHIN:
                    problems.append(f"node {node.name}: ok again {'never' if first_ok is None else f'{first_ok - restart:.2f}s'}"
                                    f" after Redis restart {idx} (limit {HEALED_WITHIN:.0f}s)")
                allowed.append((kill, first_ok if first_ok is not None else restart + HEALED_WITHIN))
            for g in node.gens[1:]:
                allowed.append((g.start_t - 1, g.start_t + STARTUP_DEGRADED_GRACE))
            stray = [t for t, g, c in polls if c == 503 and not any(a <= t <= b for a, b in allowed)]
            if stray:
                problems.append(f"node {node.name}: degraded outside any outage, {len(stray)} polls from {self.rel(stray[0])}s")
            unreachable = [t for t, g, c in polls if c == 0 and alive_through(t - 0.5, t)
                           and not (self.c_outage and node.name == "c" and self.c_outage["kill"] - 1 <= t <= self.c_outage["start"] + 2)]
            if len(unreachable) > 4:
                problems.append(f"node {node.name}: /healthz did not answer {len(unreachable)} times while the node was up")
            transitions[node.name + "_unanswered_polls"] = len(unreachable)
        return problems, transitions

    # -- output ------------------------------------------------------------------------

    def output(self, report: dict) -> int:
        path = self.run_dir / "report.json"
        path.write_text(json.dumps(report, indent=1, default=str))
        if self.args.report:
            Path(self.args.report).write_text(json.dumps(report, indent=1, default=str))
        d, s, k = report["deliveries"], report["sends"], report["sockets"]
        out = []
        w = out.append
        w("")
        w(f"wspush soak: {report['config']['clients']} clients, {report['config']['ids']} ids, "
          f"{report['config']['duration']}s nominal ({report['elapsed']}s run), seed {report['config']['seed']}")
        w(f"run directory: {report['run_dir']}")
        w("")
        w("faults (seconds from start):")
        for o in report["faults"]["redis"]:
            w(f"  redis outage {o['index']}: kill {o['kill']}, back {o['restart']}, nodes ok again "
              + ", ".join(f"{n} {v}" for n, v in o["healed"].items()))
        c = report["faults"]["node_c"]
        if c:
            w(f"  node c: kill {c['kill']}, restarted {c['start']}, ok {c['healed']}")
        w("")
        w(f"sends: {s['unicast_ok']} unicast" + (f" ({s['unicast_202']} of them 202)" if report["config"]["history_size"] else "")
          + f" + {s['broadcast_ok']} broadcast accepted "
          f"({s['answered_nodes_null']} with nodes=null), {s['failed']} failed POSTs (not sends), "
          f"{s['skipped_backlog']} skipped")
        w(f"sockets: {k['connections']} connections ({k['dropped_by_server_or_kill']} dropped), connect failures "
          f"{k['connect_failures']}, client loop lag max {k['client_loop_lag_max']}s "
          f"(over 0.5 s {k['client_loop_lag_over_0.5s']} times)")
        w("")
        w(f"{'deliveries':<56}{'count':>12}")
        rows = [
            ("received (all)", d["received"]),
            ("required (expected, no outage on path)", d["required"]),
            ("  delivered", d["required_delivered"]),
            ("  local while Redis down: required", d["local_required_while_redis_down"]),
            ("  local while Redis down: delivered", d["local_delivered_while_redis_down"]),
            ("duplicates", d["duplicates"]),
            ("for another id / unknown", f"{d['misrouted']} / {d['unknown']}"),
            ("not expected, delivered once", d["not_expected_but_delivered_once"]),
            ("from failed POSTs, delivered", d["from_failed_posts"]),
        ]
        for cause in sorted(set(d["excused_expected"]) | set(d["excused_missed"])):
            rows.append((f"excused ({cause}): expected", d["excused_expected"].get(cause, 0)))
            rows.append((f"excused ({cause}): missed", d["excused_missed"].get(cause, 0)))
        h = report.get("history")
        if h:
            rows += [
                ("history: unicast required, live (open across the send)", h["kinds"].get("live", 0)),
                ("history:   delivered", h["kinds_delivered"].get("live", 0)),
                ("history: unicast required, replay (after since)", h["kinds"].get("replay", 0)),
                ("history:   delivered", h["kinds_delivered"].get("replay", 0)),
                ("history: accepted 202 (Redis down) / at a kill", f"{h['accepted_202']} / {h['accepted_202_at_kill']}"),
                ("history: socket closed before due (not required)", f"{h['not_due']} ({h['not_due_delivered']} got it)"),
                ("history: resumes (to another node / reached !pos)",
                 f"{h['resumes']} ({h['resumes_other_node']} / {h['resumes_live']})"),
                ("history: frames replayed (max in one resume)", f"{h['replayed_frames']} ({h['replay_max']})"),
                ("history: !lost / position anomalies / conflicts", f"{len(h['lost'])} / {h['n_anomalies']} / {h['n_conflicts']}"),
                ("history: latency max live / after heal (s)", f"{h['live_latency_max']} / {h['catchup_after_heal_max']}"),
            ]
            for cause, n in sorted(h["excused"].items()):
                rows.append((f"excused: {cause}", n))
        for name, v in rows:
            w(f"{name:<56}{v!s:>12}")
        w("")
        w(f"{'node':<6}{'RSS kB base':>13}{'RSS kB end':>12}{'change':>9}{'fds base':>10}{'fds end':>9}{'change':>9}   mid (a, b)")
        for n, r in report["resources"].items():
            b, e = r["baseline"] or {}, r["end"] or {}
            mid = r.get("mid")
            w(f"{n:<6}{b.get('rss_kb', '-')!s:>13}{e.get('rss_kb', '-')!s:>12}{r.get('rss_kb_change', 0):>+9.1%}"
              f"{b.get('fds', '-')!s:>10}{e.get('fds', '-')!s:>9}{r.get('fds_change', 0):>+9.1%}   "
              + (f"rss {mid['rss_kb']} fds {mid['fds']}" if mid else ""))
        w("")
        w("healthz transitions (t, process generation, state):")
        for n in NODE_NAMES:
            w(f"  {n}: " + " ".join(f"{t}:{st}" + (f"(gen{g})" if g > 1 else "") for t, g, st in report["health"][n]))
        w("")
        w(f"{'counters (last /stats)':<10}" + "".join(f"{c:>14}" for c in report["counters"]))
        keys = ["published", "publish_failed", "publish_dropped", "delivery_dropped", "received", "own_skipped", "reconnects"]
        if report["config"].get("history_size"):
            keys += ["history_appends", "history_append_retried", "history_append_duplicates", "history_reads",
                     "history_read_failed", "history_duplicates", "history_gap_fills", "history_lost_signals"]
        for key in keys:
            w(f"  {key:<20}" + "".join(f"{str(v[key]):>14}" for v in report["counters"].values()))
        w("")
        for name, c in sorted(report["checks"].items()):
            w(f"[{'PASS' if c['ok'] else 'FAIL'}] {name}: {c['detail']}")
        if report["missing_examples"]:
            w("")
            w(f"first missing required deliveries ({report['missing_total']} in all):")
            for m in report["missing_examples"][:10]:
                w(f"  {m}")
        if h and (h["anomalies"] or h["conflicts"] or h["lost"] or h["pos_late"] or h["not_appended"]):
            w("history problems:")
            for x in [*h["anomalies"][:10], *h["conflicts"][:10], *h["lost"][:10], *h["pos_late"][:10], *h["not_appended"][:10]]:
                w(f"  {x}")
        if report["duplicate_examples"]:
            w("duplicates:")
            for m in report["duplicate_examples"][:10]:
                w(f"  {m}")
        w("")
        w("PASS" if report["ok"] else "FAIL: " + ", ".join(n for n, c in sorted(report["checks"].items()) if not c["ok"]))
        print("\n".join(out), flush=True)
        line = {"soak": "wspush", "ok": report["ok"], "checks": {n: c["ok"] for n, c in report["checks"].items()},
                "config": report["config"], "elapsed": report["elapsed"], "sends": {k: v for k, v in report["sends"].items() if k != "failed_examples"},
                "deliveries": report["deliveries"], "resources": report["resources"], "run_dir": report["run_dir"]}
        print(json.dumps(line, separators=(",", ":")), flush=True)
        return 0 if report["ok"] else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="wspush soak test with faults (see the module docstring)")
    p.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--ids", type=int, default=1000)
    p.add_argument("--send-rate", type=float, default=200, help="unicast sends per second")
    p.add_argument("--broadcast-every", type=float, default=2.0, help="seconds between broadcasts")
    p.add_argument("--binary", default=None,
                   help="the wspush build to soak (default: target/release/wspush, built from the workspace first)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--report", default=None, help="also write the JSON report here")
    p.add_argument("--settle", type=float, default=SETTLE, help="SETTLE seconds of the delivery model (default 1)")
    p.add_argument("--client-procs", type=int, default=0, help="client worker processes (default 1, 2 above 2000 clients)")
    p.add_argument("--history-size", type=int, default=0,
                   help="per-id history in Redis (the nodes' --history-size); 0 (default): history off, today's checks")
    p.add_argument("--redis-cluster", action="store_true",
                   help="run the nodes against a Redis Cluster (redis+cluster://) of 3 masters with a replica each: "
                        "each Redis outage kills a master (-9), its replica takes over, and the killed node comes "
                        "back as a replica")
    p.add_argument("--redis-persistence", choices=("aof", "none"), default="aof",
                   help="with history: Redis with AOF (default; a kill loses nothing) or without persistence (each "
                        "restart is a new epoch, announced with !lost: exactly once up to the !lost, and from it)")
    p.add_argument("--resume-share", type=float, default=0.5,
                   help="with history: the share of reconnects that resume with ?since= (default 0.5)")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if args.duration < 30 or args.clients < 3 or args.ids < 1 or args.send_rate <= 0 or args.broadcast_every <= 0:
        p.error("need --duration >= 30, --clients >= 3, --ids >= 1, positive rates")
    if args.history_size < 0 or not 0 <= args.resume_share <= 1:
        p.error("need --history-size >= 0 and --resume-share from 0 to 1")
    return args


def main() -> int:
    global SETTLE
    args = parse_args()
    SETTLE = args.settle
    ensure_websockets()
    if shutil.which("redis-server") is None:
        log("redis-server is not installed (scripts/ensure-tools.sh installs it)")
        return 2
    if args.binary is None:
        # Always build: cheap when up to date, and the soak then tests the code in the tree,
        # not whatever release binary an earlier build left.
        log("cargo build --release -p wspush --bin wspush")
        subprocess.run(["cargo", "build", "--release", "-p", "wspush", "--bin", "wspush"], cwd=ROOT, check=True, timeout=1800)
        args.binary = str(ROOT / "target" / "release" / "wspush")
    binary = Path(args.binary)
    if not binary.exists():
        log(f"{binary} does not exist")
        return 2
    atexit.register(kill_everything)
    budget = int(args.duration + 120)

    def watchdog(signum, frame):
        log(f"watchdog: the run exceeded {budget}s; killing everything")
        kill_everything()
        os._exit(1)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(budget)
    soak = Soak(args)

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await soak.run()
        except asyncio.CancelledError:
            log("interrupted; stopping everything")
            return 130
        except Exception as e:
            import traceback

            traceback.print_exc()
            log(f"error: {e}; logs in {soak.run_dir}")
            return 1
        finally:
            kill_everything()

    return asyncio.run(runner())


if __name__ == "__main__":
    sys.exit(main())
