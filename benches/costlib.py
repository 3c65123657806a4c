"""What the cost benchmarks (`tls_cost.py`, `compression_cost.py`) share: starting a release
`wspush`, reading its memory and CPU from /proc and its counters from `GET /stats`, opening
WebSocket connections, posting broadcasts, timing a delivery phase, and appending one JSON
line per run to a results file, then the session's medians (never over an inexact run).

The binary is `--wspush-bin`, else `$WSPUSH_BIN`, else `target/release/wspush` (a helper
building into its own `CARGO_TARGET_DIR` points there).
"""
import asyncio, datetime, http.client, json, multiprocessing, os, re, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.environ.get("WSPUSH_BIN") or os.path.join(ROOT, "target", "release", "wspush")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Bounds on what waits for the server; a run that exceeds one fails rather than hangs.
START_TIMEOUT = 30
CONNECTED_TIMEOUT = 30
POST_TIMEOUT = 30


def rss(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    """A `wspush` on free loopback ports, no pings and no idle timeout (an idle connection
    costs nothing but its memory), started with `args` added."""

    def __init__(self, binary, args=()):
        command = [binary, "--ws-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                   "--ping-interval", "0s", "--idle-timeout", "0s", "--log", "warn", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ws = api = None
        deadline = time.monotonic() + START_TIMEOUT
        while ws is None or api is None:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit(f"wspush did not start: {' '.join(command)}")
            m = re.match(r"wspush: websocket listening on wss?://([\d.]+):(\d+)(/\S*)", line)
            if m:
                ws = (m.group(1), int(m.group(2)), m.group(3))
            m = re.match(r"wspush: http api listening on http://([\d.]+):(\d+)", line)
            if m:
                api = (m.group(1), int(m.group(2)))
        self.ws, self.api = ws, api

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        """`GET /stats` as a dict."""
        conn = http.client.HTTPConnection(*self.api, timeout=POST_TIMEOUT)
        try:
            conn.request("GET", "/stats")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            return json.loads(body)
        finally:
            conn.close()

    async def wait_connected(self, n):
        """Waits until the server holds `n` WebSocket connections (every upgrade adopted
        by a worker), so a phase starts with all of them, not after a guessed sleep."""
        deadline = time.monotonic() + CONNECTED_TIMEOUT
        while self.stats()["connections"] != n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server never held {n} connections")
            await asyncio.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def connect(server, id, context=None, headers=()):
    """One upgraded connection to `/{prefix}{id}`, with `headers` (lines without CR LF)
    added to the request: (reader, writer, the response head up to its blank line)."""
    host, port, prefix = server.ws
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost" if context else None, limit=1 << 20)
    extra = "".join(f"{h}\r\n" for h in headers)
    writer.write((f"GET {prefix}{id} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECTED_TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer, head


async def open_many(server, n, **options):
    """`n` connections (ids u0 ... u{n-1}), 200 upgrades in flight at a time; the server
    is then waited for until it holds all of them."""
    conns = []
    for start in range(0, n, 200):
        conns += await asyncio.gather(*(connect(server, f"u{i}", **options) for i in range(start, min(n, start + 200))))
    await server.wait_connected(n)
    return conns


def close_all(conns):
    for _, writer, _ in conns:
        writer.close()


async def hold_idle(server, n, hold=2.0, **options):
    """Opens `n` connections, holds them `hold` s (the scenario: connections that stay
    open, not a wait for anything) and reads the RSS they added:
    (RSS after - RSS before any connection) / n. Returns the figures and the connections
    (the caller closes them)."""
    before = rss(server.pid)
    conns = await open_many(server, n, **options)
    await asyncio.sleep(hold)
    after = rss(server.pid)
    return {"connections": n, "rss_before": before, "rss_after": after,
            "rss_per_connection": (after - before) / n}, conns


class Poster:
    """Posts `count` broadcasts of `payload` to `POST /broadcast` over keep-alive HTTP
    connections: back to back (a burst) over `connections` connections at once, or over
    one, the k-th at start + k * `interval` (paced); with `unicast_ids` = n, the k-th to
    `POST /socket/u{k mod n}` instead (the ids `open_many` connects). Each answer must be
    200 with the receipt's `sockets` equal to `sockets` (when given); anything else is a
    publish error.
    After `join`: `sent`, each post's monotonic time (in order with one connection);
    `errors`; `finished`, when the last answer came.

    The API answers a broadcast once the workers have queued it, and one connection's
    requests one after the other, so one connection posts a broadcast per worker pass; a
    burst over several connections lets broadcasts queue up behind a pass, as they do
    when many senders push at once. It posts from a process of its own: as a thread it
    would wait for the interpreter lock the clients' event loop holds, up to a switch
    interval (5 ms) per post, and a burst would measure that."""

    def __init__(self, api, payload, count, sockets=None, interval=None, connections=1, content_type="text/plain",
                 unicast_ids=None):
        assert interval is None or connections == 1, "a paced run posts over one connection"
        self.api, self.payload, self.count, self.sockets = api, payload, count, sockets
        self.unicast_ids = unicast_ids
        self.interval, self.connections, self.content_type = interval, connections, content_type
        self.sent, self.errors, self.finished = [], [], None

    def start(self):
        self.results, sender = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("fork").Process(target=self.post, args=(sender,), daemon=True)
        self.process.start()
        sender.close()

    def join(self, timeout):
        if self.results.poll(timeout):
            self.sent, self.errors, self.finished = self.results.recv()
        else:
            self.process.kill()
            self.errors.append("the poster did not finish")
        self.process.join(timeout)

    def post(self, sender):
        sent, errors = [], []
        shares = [range(i, self.count, self.connections) for i in range(self.connections)]
        posters = [threading.Thread(target=self.post_over_one, args=(share, sent, errors)) for share in shares]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join()
        sender.send((sent, errors, time.monotonic()))

    def post_over_one(self, share, sent, errors):
        """Posts the broadcasts numbered `share` over one connection."""
        try:
            conn = http.client.HTTPConnection(*self.api, timeout=POST_TIMEOUT)
            start = time.monotonic()
            for k in share:
                if self.interval is not None:
                    # Pacing: the schedule, not a synchronisation.
                    delay = start + k * self.interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                sent.append(time.monotonic())
                path = f"/socket/u{k % self.unicast_ids}" if self.unicast_ids else "/broadcast"
                conn.request("POST", path, body=self.payload, headers={"Content-Type": self.content_type})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    errors.append(f"post {k}: HTTP {response.status} {body[:200]!r}")
                elif self.sockets is not None and json.loads(body).get("sockets") != self.sockets:
                    errors.append(f"post {k}: reached {body[:200]!r}, not {self.sockets} sockets")
            conn.close()
        except Exception as e:  # reported as a publish error: the run is then inexact
            errors.append(f"posting stopped: {e!r}")


async def deliver(server, conns, poster, read_socket):
    """Runs `poster` while every connection's reader goes through `read_socket(reader)`;
    returns the readers' results (in connection order) and the phase's figures: seconds
    from the first post to the last reader done, the server's CPU seconds over that time,
    and `GET /stats` before and after."""
    stats_before = server.stats()
    cpu0, own0, t0 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
    poster.start()
    results = await asyncio.gather(*(read_socket(reader) for reader, _, _ in conns))
    t1, cpu1, own1 = time.monotonic(), cpu_seconds(server.pid), time.process_time()
    poster.join(POST_TIMEOUT)
    stats_after = server.stats()
    return results, {"seconds": t1 - t0, "server_cpu_seconds": cpu1 - cpu0,
                     # Who limits the rate: this process (clients and poster) and how long
                     # the posts took (the last answered before the last frame was read?).
                     "client_cpu_seconds": own1 - own0,
                     "posting_seconds": (poster.finished or t1) - t0,
                     "stats_before": stats_before, "stats_after": stats_after}


def counter_delta(phase, name):
    return phase["stats_after"][name] - phase["stats_before"][name]


def alternate(variants, round):
    """The variants in the order of `round`: as given on even rounds, reversed on odd
    ones, so neither always runs first on a machine that warms up or gets busier."""
    return list(variants) if round % 2 == 0 else list(reversed(variants))


def load_generator_report(command, timeout=600):
    """Runs a `wspush-bench` command (in the repository's root) and returns its last JSON
    report, or an inexact row (with its exit code, the command's stderr passed on) when it
    failed or reported nothing."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-2000:])
        return {"exact": False, "exit": done.returncode}
    return lines[-1]


def commit():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


class Session:
    """One benchmark session: every run's line (with the commit, the session's start,
    the 1-minute load average) appended to `out` and kept for the summary."""

    def __init__(self, out):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        self.out = open(out, "a")
        self.commit = commit()
        self.started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.lines = []

    def record(self, line):
        # A line may name the commit its binary was built from (a session comparing builds).
        line = {"commit": self.commit, **line, "session": self.started, "load": os.getloadavg()[0]}
        print(json.dumps(line), flush=True)
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        self.lines.append(line)
        return line

    def inexact(self):
        return [line for line in self.lines if line.get("exact") is False]

    def summary(self, variant, fields):
        """Per scenario and `variant` value, the median and range of each of `fields`
        (scenario -> list of field names) over the session's runs; printed, and returned as
        {scenario: {variant value: {field: (median, low, high)}}}. Refused (exit status 1)
        when any run was inexact: a median is never taken over a loss."""
        bad = self.inexact()
        if bad:
            for line in bad:
                print(f"INEXACT: {line['scenario']} {variant}={line[variant]} round {line['round']}: "
                      f"{json.dumps(line.get('faults'))}", file=sys.stderr)
            print(f"{len(bad)} inexact run(s): no medians reported", file=sys.stderr)
            sys.exit(1)
        table = {}
        for scenario, names in fields.items():
            for line in self.lines:
                if line["scenario"] != scenario:
                    continue
                row = table.setdefault(scenario, {}).setdefault(line[variant], {})
                for name in names:
                    row.setdefault(name, []).append(line[name])
        loads = [line["load"] for line in self.lines]
        print(f"session {self.started}, commit {self.commit}, load {min(loads):.2f}-{max(loads):.2f}")
        for scenario, rows in table.items():
            for value, row in rows.items():
                for name, values in row.items():
                    row[name] = (statistics.median(values), min(values), max(values))
                    print(f"{scenario:10} {variant}={value!s:5} {name:32} median {row[name][0]:.6g} "
                          f"({row[name][1]:.6g}-{row[name][2]:.6g}, {len(values)} runs)")
        return table
