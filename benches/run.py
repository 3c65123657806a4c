"""Runs the benchmark matrix: every scenario against wspush, the Node.js baseline (`baseline`:
Node.js `ws` + ioredis) and the same design on Bun (`uws`: uWebSockets), where that design
runs the scenario, in one session, several runs each; writes the raw JSON lines, a table per
scenario with medians (a column per target, and the ratios wspush/baseline and wspush/uws),
and a chart (SVG) of deliveries/s and memory per connection. BENCHMARKS.md quotes its output.

    python3 benches/run.py                 # the whole matrix, 3 runs each (about 25 minutes)
    python3 benches/run.py --runs 1 --only unicast-1node,broadcast
    python3 benches/run.py --report-only   # redo tables and chart from benches/results/runs.jsonl
    python3 benches/run.py --list          # the entries, with their targets (and which are pending)
    python3 benches/run.py --runs 3 --only unicast-1node-http,unicast-1node-history   # history off vs on

The time: one run is about 7.5 minutes of scenarios on the 2-core development machine (wspush
about 1.5, baseline about 3.5, uws about 2.5; the fixed-duration scenarios, idle, latency,
sustained broadcast and slow, are most of it, and the Node.js baseline's broadcast burst
alone takes about a minute), from the wall times in runs.jsonl; e.g. unicast-http, one run
of its three targets, took 20 s, unicast-1node-tungstenite 3 s. Change an entry's arguments,
and rerun it with --fresh (or remove its old lines): medians are taken per label and target.

Needs: the release build (`cargo build --release -p wspush -p wspush-bench`, done here),
redis-server, and Node.js with the baselines' dependencies (`npm ci` in benches/baseline and in
benches/baseline-bun, whose `bun` package brings the Bun runtime; done here).

An inexact run (anything missing, duplicated or misrouted, a failed connection, a refused
publish, an unexpected close: `wspush-bench` exits non-zero with `"exact": false`), or a run
that failed outright, is recorded as such in runs.jsonl, and no tables are written while
runs.jsonl holds one: the error names each such run. Medians are never taken over them.

History (issue 13): the history entries run wspush alone (the baselines have no history), each
beside the same entry with history off, in the same run of the matrix, so every run alternates
off and on; tables.md then has a table "history on vs off" with the ratios. An entry marked
pending (what it needs has not landed yet) is skipped unless named in --only, so it cannot make
the matrix inexact.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benches", "results")
BENCH = os.path.join(ROOT, "target", "release", "wspush-bench")

# name, scenario, arguments, targets (target -> extra arguments). baseline is the original
# design on Node.js `ws` (benches/baseline), uws the same design on Bun's uWebSockets
# (benches/baseline-bun); both take what the same design offers (Redis compat, HTTP).
def both(wspush, baseline):
    """wspush with its arguments, and both baselines with theirs."""
    return {"wspush": wspush, "baseline": baseline, "uws": baseline}


MATRIX = [
    ("idle", "idle", ["--connections", "19000", "--duration", "10"], both([], [])),
    # Broadcasts published to Redis: the one path both designs share.
    ("broadcast", "broadcast", ["--connections", "10000", "--broadcasts", "500"],
     both(["--via", "redis-envelope"], ["--via", "redis-compat"])),
    # The same path paced (100 broadcasts/s for 10 s): a rate held, not a burst drained.
    ("broadcast-sustained", "broadcast", ["--connections", "10000", "--rate", "100", "--duration", "10"],
     both(["--via", "redis-envelope"], ["--via", "redis-compat"])),
    # wspush's own paths: the HTTP API (32 keep-alive connections) and in-process sends.
    ("broadcast-http", "broadcast", ["--connections", "10000", "--broadcasts", "500"],
     {"wspush": ["--via", "http"]}),
    ("broadcast-inproc", "broadcast", ["--connections", "10000", "--broadcasts", "500"],
     {"wspush": ["--via", "inproc"]}),
    ("unicast-1node", "unicast", ["--connections", "1000", "--messages", "200000"],
     both(["--via", "redis-compat"], ["--via", "redis-compat"])),
    # The same through wspush's own Redis format (a channel per id) against the baseline's one channel.
    ("unicast-1node-envelope", "unicast", ["--connections", "1000", "--messages", "200000"],
     {"wspush": ["--via", "redis-envelope"], "uws": ["--via", "redis-compat"]}),
    # The same as unicast-1node, read by the independent tokio-tungstenite client.
    ("unicast-1node-tungstenite", "unicast",
     ["--connections", "1000", "--messages", "200000", "--client", "tungstenite"],
     {"wspush": ["--via", "redis-compat"], "uws": ["--via", "redis-compat"]}),
    ("unicast-1node-10k", "unicast", ["--connections", "10000", "--messages", "200000"],
     both(["--via", "redis-compat"], ["--via", "redis-compat"])),
    # The same, read by the independent tokio-tungstenite client.
    ("unicast-1node-10k-tungstenite", "unicast",
     ["--connections", "10000", "--messages", "200000", "--client", "tungstenite"],
     {"wspush": ["--via", "redis-compat"], "uws": ["--via", "redis-compat"]}),
    ("unicast-2nodes", "unicast", ["--connections", "1000", "--messages", "200000", "--nodes", "2"],
     both(["--via", "redis-envelope"], ["--via", "redis-compat"])),
    # POST /socket/{id} on one node. Both pay a Redis PUBLISH per POST: the baselines deliver
    # what comes back from Redis; wspush (--with-redis: cluster mode on one node) delivers to
    # its own sockets directly and PUBLISHes for other nodes.
    ("unicast-http", "unicast", ["--connections", "1000", "--messages", "100000"],
     both(["--via", "http", "--with-redis"], ["--via", "http"])),
    ("unicast-inproc", "unicast", ["--connections", "1000", "--messages", "1000000"],
     {"wspush": ["--via", "inproc"]}),
    ("cluster", "cluster", ["--connections", "2000", "--messages", "100000"], both([], [])),
    # The same, sending in-process on both nodes: the publishers' pipelines under load.
    ("cluster-inproc", "cluster", ["--connections", "2000", "--messages", "100000"],
     {"wspush": ["--via", "inproc"]}),
    ("latency-10k", "latency", ["--connections", "1000", "--rate", "10000", "--duration", "10"],
     both(["--via", "redis-compat"], ["--via", "redis-compat"])),
    ("latency-50k", "latency", ["--connections", "1000", "--rate", "50000", "--duration", "10"],
     both(["--via", "redis-compat"], ["--via", "redis-compat"])),
    ("slow", "slow", ["--connections", "1000", "--rate", "200", "--duration", "20", "--size", "1024"],
     both(["--via", "redis-envelope"], ["--via", "redis-compat"])),
    ("fleet", "fleet", [], {"wspush": []}),
    # History (issue 13), wspush only. Off and on on the same path, side by side (so alternated
    # within every run): POST /socket/{id} on one node, no Redis (single-node history; it is
    # not available through Redis yet, and messages from the compat channel are live-only, so
    # the unicast-1node path cannot carry it). On: --history-size 100 and wspush.v1 clients,
    # whose offsets are checked per socket (a gap, a repeat, a silent epoch are faults).
    ("unicast-1node-http", "unicast", ["--connections", "1000", "--messages", "200000", "--via", "http"],
     {"wspush": []}),
    ("unicast-1node-history", "unicast",
     ["--connections", "1000", "--messages", "200000", "--via", "http", "--history-size", "100", "--v1"],
     {"wspush": []}),
    ("unicast-1node-10k-http", "unicast", ["--connections", "10000", "--messages", "200000", "--via", "http"],
     {"wspush": []}),
    ("unicast-1node-10k-history", "unicast",
     ["--connections", "10000", "--messages", "200000", "--via", "http", "--history-size", "100", "--v1"],
     {"wspush": []}),
    # Resume storms: 10,000 v1 clients disconnect, messages go out while they are away, all
    # reconnect at once with ?since=; every replay must be exact. One id (500 missed per client,
    # 5,000,000 replayed deliveries) and an id each (5 missed per client).
    ("resume-storm-1node", "resume", ["--connections", "10000", "--ids", "1", "--messages", "500"],
     {"wspush": []}),
    ("resume-storm-1node-10k-ids", "resume", ["--connections", "10000", "--ids", "10000", "--messages", "50000"],
     {"wspush": []}),
    # Through Redis (cluster mode on one node: every POST is appended to the id's history in
    # Redis, which positions it), beside unicast-http's wspush column; resume storms whose
    # replays are read from Redis (one id: 10,000 concurrent resumes of one history).
    ("unicast-http-history", "unicast",
     ["--connections", "1000", "--messages", "100000", "--via", "http", "--with-redis", "--history-size", "100",
      "--v1"],
     {"wspush": []}),
    ("unicast-http-10k", "unicast", ["--connections", "10000", "--messages", "200000", "--via", "http", "--with-redis"],
     {"wspush": []}),
    ("unicast-http-10k-history", "unicast",
     ["--connections", "10000", "--messages", "200000", "--via", "http", "--with-redis", "--history-size", "100",
      "--v1"],
     {"wspush": []}),
    ("resume-storm-redis", "resume", ["--connections", "10000", "--ids", "1", "--messages", "500", "--with-redis"],
     {"wspush": []}),
    ("resume-storm-redis-10k-ids", "resume",
     ["--connections", "10000", "--ids", "10000", "--messages", "50000", "--with-redis"],
     {"wspush": []}),
    # An entry whose prerequisite has not landed yet takes a fifth element, {"pending": "why"}:
    # it is skipped unless named in --only, so it cannot make the matrix inexact (`entries`).
]

# History off -> on, same path: (off, on) entries compared in tables.md.
HISTORY_PAIRS = [
    ("unicast-1node-http", "unicast-1node-history"),
    ("unicast-1node-10k-http", "unicast-1node-10k-history"),
    ("unicast-http", "unicast-http-history"),
    ("unicast-http-10k", "unicast-http-10k-history"),
]
HISTORY_COLUMNS = ["deliveries_per_s", "server_cpu_s_per_100k", "latency_p50_ms", "latency_p99_ms"]


def entries(only=()):
    """The matrix as (name, scenario, args, targets, notes); pending entries only when named."""
    for entry in MATRIX:
        name, scenario, args, targets = entry[:4]
        notes = entry[4] if len(entry) > 4 else {}
        if only and name not in only:
            continue
        if notes.get("pending") and name not in only:
            continue
        yield name, scenario, args, targets, notes

# Column headers: what each target is.
TARGET_NAMES = {
    "wspush": "wspush",
    "baseline": "baseline (Node.js ws)",
    "uws": "uws (Bun/uWebSockets)",
}
# The ratios each table shows, when both targets ran.
RATIOS = [("wspush", "baseline"), ("wspush", "uws")]

# What each table shows, in order (missing columns are skipped).
COLUMNS = {
    "idle": ["connected", "connects_per_s", "server_rss_bytes_per_connection", "closed_while_held",
             "pings_answered", "server_cpu_s_while_held"],
    # rate and achieved_rate: sustained runs only (a burst's table skips them).
    "broadcast": ["rate", "achieved_rate", "deliveries", "missing", "duplicates",
                  "deliveries_per_s", "drained_after_publish_ms", "seconds", "server_cpu_s_per_100k",
                  "latency_p50_ms", "latency_p99_ms", "latency_p999_ms"],
    # drained_after_publish_ms: how long after the last publish the last delivery came (near 0: the
    # server kept pace, so deliveries/s is the publisher's rate).
    "unicast": ["deliveries", "missing", "duplicates", "misrouted", "deliveries_per_s", "drained_after_publish_ms",
                "server_cpu_s_per_100k",
                "redis_cpu_s", "latency_p50_ms", "latency_p99_ms", "latency_p999_ms"],
    "cluster": ["deliveries", "missing", "duplicates", "misrouted", "deliveries_per_s", "server_cpu_s_per_100k",
                "latency_p99_ms", "redis_publishes_per_1000_messages",
                "redis_round_trips_per_1000_publishes", "connect_storm_subscribe_commands"],
    "latency": ["rate", "deliveries", "missing", "latency_p50_ms", "latency_p99_ms", "latency_p999_ms",
                "server_cpu_s_per_100k"],
    "slow": ["slow_clients", "first_half_deliveries_per_s", "first_half_latency_p99_ms", "second_half_latency_p99_ms",
             "first_half_missing", "second_half_missing", "server_rss_start_mib", "server_rss_peak_mib",
             "server_rss_end_mib", "slow_consumer_disconnects"],
    "fleet": ["connected", "connect_seconds", "connect_storm_subscribe_commands",
              "server_rss_bytes_per_connection", "broadcast_deliveries", "broadcast_missing",
              "broadcast_duplicates", "broadcast_deliveries_per_s", "broadcast_server_cpu_s_per_100k",
              "unicast_deliveries", "unicast_missing", "unicast_duplicates", "unicast_deliveries_per_s",
              "unicast_server_cpu_s_per_100k", "unicast_latency_p99_ms", "server_connections_at_end"],
    "resume": ["clients", "ids", "missed_messages", "live_messages", "reconnect_seconds", "replay_seconds",
               "resumed_clients", "replayed_deliveries_expected", "replayed_per_s", "deliveries", "missing",
               "duplicates", "server_cpu_s", "server_cpu_s_per_100k", "server_rss_connected_mib",
               "server_rss_peak_mib", "server_history_replayed"],
}


def build(targets):
    """The release build, and the baselines' dependencies if `targets` (those the selected
    entries run) include them."""
    subprocess.run(["cargo", "build", "--release", "-p", "wspush", "-p", "wspush-bench"], cwd=ROOT, check=True)
    if not targets & {"baseline", "uws"}:
        return
    baseline = os.path.join(ROOT, "benches", "baseline")
    if not os.path.isdir(os.path.join(baseline, "node_modules", "ws")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=baseline, check=True)
    bun = os.path.join(ROOT, "benches", "baseline-bun")
    if not os.path.exists(os.path.join(bun, "node_modules", ".bin", "bun")):
        # Not --ignore-scripts: the bun package's postinstall puts the runtime in place.
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=bun, check=True)


def run_matrix(runs, only, out_path):
    with open(out_path, "a") as out:
        for run in range(1, runs + 1):
            for name, scenario, args, targets, notes in entries(only):
                if notes.get("pending"):
                    print(f"[run {run}/{runs}] {name}: pending ({notes['pending']}), run because --only names it",
                          flush=True)
                # Rotate the target order from run to run, so no target always goes first (or
                # last) and gets the cooler (or warmer) machine.
                order = list(targets.items())
                shift = (run - 1) % len(order)
                order = order[shift:] + order[:shift]
                for target, extra in order:
                    command = [BENCH, scenario, "--target", target, "--quiet", "--label", name] + args + extra
                    print(f"[run {run}/{runs}] {name} {target}: {' '.join(command[1:])}", flush=True)
                    started = time.time()
                    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
                    line = last_json_line(done.stdout)
                    if line is None:
                        # Failed before any figure: recorded, so the report refuses the matrix.
                        line = {"scenario": scenario, "target": target, "label": name, "exact": False}
                    if done.returncode != 0:
                        line["exact"] = False
                        line["exit"] = done.returncode
                        print(f"  INEXACT OR FAILED (exit {done.returncode}): {fault_summary(line)}", flush=True)
                    line["run"] = run
                    line["wall_seconds"] = round(time.time() - started, 1)
                    out.write(json.dumps(line) + "\n")
                    out.flush()


def last_json_line(stdout):
    for text in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


# Counts that must be zero in an exact run (lines written before `"exact"` existed carry some
# of them, with a scenario's prefix: first_half_missing, unicast_duplicates, ...).
FAULT_SUFFIXES = ("missing", "duplicates", "misrouted", "unexpected", "connect_failures", "publish_errors",
                  "unexpected_closes", "bad_frames", "publish_failures")


def fault_summary(line):
    faults = line.get("faults") or {k: v for k, v in line.items() if k.endswith(FAULT_SUFFIXES)}
    nonzero = [f"{k} {v}" for k, v in sorted(faults.items()) if isinstance(v, (int, float)) and v]
    if "exit" in line:
        nonzero.append(f"exit {line['exit']}")
    return ", ".join(nonzero) or "no figures"


def is_exact(line):
    if "exact" in line:
        return line["exact"] is True
    return not any(isinstance(v, (int, float)) and v for k, v in line.items() if k.endswith(FAULT_SUFFIXES))


def refuse_inexact(lines, path):
    """Exits naming every inexact or failed run in `lines`: no medians over a loss."""
    bad = [line for line in lines if not is_exact(line)]
    if not bad:
        return
    print(f"run.py: refusing to report: {path} holds {len(bad)} inexact or failed run(s):", file=sys.stderr)
    for line in bad:
        print(f"  {line.get('label')} · {line.get('target')} · run {line.get('run', '?')}: {fault_summary(line)}",
              file=sys.stderr)
    print("run.py: find the cause, then rerun those (after removing their lines, or with --fresh).", file=sys.stderr)
    sys.exit(1)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def medians(lines):
    """{(label, target): {column: median}} over the runs."""
    groups = {}
    for line in lines:
        groups.setdefault((line["label"], line["target"]), []).append(line)
    table = {}
    for key, group in groups.items():
        values = {}
        for column in set().union(*(g.keys() for g in group)):
            numbers = [g[column] for g in group if isinstance(g.get(column), (int, float)) and not isinstance(g.get(column), bool)]
            if numbers:
                values[column] = statistics.median(numbers)
        values["runs"] = len(group)
        table[key] = values
    return table


def fmt(value):
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.1f}×"
    return ""


def tables(table):
    lines = []
    for name, scenario, args, targets, _ in entries():
        present = [t for t in targets if (name, t) in table]
        if not present:
            continue
        ratios = [(a, b) for a, b in RATIOS if a in present and b in present]
        lines.append(f"### {name}\n")
        lines.append(f"`wspush-bench {scenario} {' '.join(args)}` + per target: "
                     + "; ".join(f"{t}: `{' '.join(targets[t]) or '(defaults)'}`" for t in present) + "\n")
        header = ["", *(TARGET_NAMES.get(t, t) for t in present), *(f"{a} / {b}" for a, b in ratios)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---" * len(header) + "|")
        lines.append("| runs | " + " | ".join([str(table[(name, t)]["runs"]) for t in present] + [""] * len(ratios))
                     + " |")
        for column in COLUMNS[scenario]:
            cells = {t: table[(name, t)].get(column) for t in present}
            if all(c is None for c in cells.values()):
                continue
            row = [column, *("–" if cells[t] is None else fmt(cells[t]) for t in present),
                   *(ratio(cells[a], cells[b]) for a, b in ratios)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines.extend(history_table(table))
    return "\n".join(lines)


def history_table(table):
    """History off vs on (wspush), per pair that ran: the figures and the ratio on / off."""
    pairs = [(off, on) for off, on in HISTORY_PAIRS if (off, "wspush") in table and (on, "wspush") in table]
    if not pairs:
        return []
    lines = ["### history on vs off (wspush)\n",
             "Each pair ran in the same session, alternated within every run. Issue 13's target: history on "
             "costs at most 1.5× the server CPU per delivery and keeps at least 60% of the deliveries/s.\n"]
    header = ["off → on"] + [f"{c} (off / on / on÷off)" for c in HISTORY_COLUMNS]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---" * len(header) + "|")
    for off, on in pairs:
        a, b = table[(off, "wspush")], table[(on, "wspush")]
        cells = [f"{off} → {on}"]
        for column in HISTORY_COLUMNS:
            x, y = a.get(column), b.get(column)
            cells.append(f"{'–' if x is None else fmt(x)} / {'–' if y is None else fmt(y)} / {ratio(y, x) or '–'}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def chart(table, path):
    """Two horizontal bar panels (log scale): deliveries/s, and bytes per idle connection."""
    panels = [
        ("deliveries per second (median, log scale)", "deliveries_per_s",
         ["broadcast", "broadcast-http", "broadcast-inproc", "unicast-1node", "unicast-1node-10k",
          "unicast-1node-envelope", "unicast-1node-tungstenite", "unicast-2nodes", "unicast-http",
          "unicast-inproc", "cluster", "cluster-inproc", "unicast-1node-http", "unicast-1node-history",
          "unicast-1node-10k-http", "unicast-1node-10k-history"]),
        ("server RSS bytes per idle connection (19,000 connections)", "server_rss_bytes_per_connection", ["idle"]),
    ]
    colors = {"wspush": "#2b6cb0", "baseline": "#c05621", "uws": "#6b46c1"}
    width, bar_h, gap, left = 960, 16, 14, 220
    y = 40
    parts = []
    import math
    for title, column, names in panels:
        rows = [(n, t, table[(n, t)][column]) for n in names for t in colors
                if (n, t) in table and column in table[(n, t)]]
        if not rows:
            continue
        top = max(v for _, _, v in rows)
        low = min(v for _, _, v in rows if v > 0) / 2
        scale = lambda v: (math.log10(max(v, low)) - math.log10(low)) / (math.log10(top) - math.log10(low) + 1e-9)
        parts.append(f'<text x="10" y="{y}" font-size="15" font-weight="bold">{title}</text>')
        y += 14
        for name in names:
            for target in colors:
                if (name, target) not in table or column not in table[(name, target)]:
                    continue
                value = table[(name, target)][column]
                w = max(2, scale(value) * (width - left - 130))
                parts.append(f'<text x="{left - 8}" y="{y + 12}" font-size="12" text-anchor="end">{name} · {target}</text>')
                parts.append(f'<rect x="{left}" y="{y}" width="{w:.0f}" height="{bar_h}" fill="{colors[target]}"/>')
                parts.append(f'<text x="{left + w + 6:.0f}" y="{y + 12}" font-size="12">{fmt(value)}</text>')
                y += bar_h + 4
            y += 6
        y += gap + 10
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n")
    with open(path, "w") as f:
        f.write(svg)


def machine_of(tables_path, report_only):
    """The machine the runs were measured on: this one, unless only the report is redone, when
    the earlier report's line is kept (runs.jsonl does not record it)."""
    if report_only and os.path.exists(tables_path):
        with open(tables_path) as f:
            first = f.readline().rstrip("\n")
        if first.startswith("Machine: "):
            return first[len("Machine: "):]
    return machine()


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated matrix names")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the entries (pending ones marked) and exit")
    parser.add_argument("--fresh", action="store_true", help="start runs.jsonl afresh")
    parser.add_argument("--results", default=RESULTS,
                        help="the folder of runs.jsonl, tables.md and chart.svg (default: benches/results)")
    args = parser.parse_args()
    if args.list:
        for entry in MATRIX:
            name, scenario, extra, targets = entry[:4]
            pending = (entry[4] if len(entry) > 4 else {}).get("pending")
            mark = f"  [pending: {pending}; runs only with --only {name}]" if pending else ""
            print(f"{name:<28} {scenario:<10} {', '.join(targets)}{mark}")
        return 0
    known = {entry[0] for entry in MATRIX}
    unknown = set(filter(None, args.only.split(","))) - known
    if unknown:
        parser.error(f"--only names unknown entries: {', '.join(sorted(unknown))} (see --list)")
    results = args.results
    os.makedirs(results, exist_ok=True)
    raw = os.path.join(results, "runs.jsonl")
    if not args.report_only:
        if args.fresh and os.path.exists(raw):
            os.remove(raw)
        only = set(filter(None, args.only.split(",")))
        build({target for entry in entries(only) for target in entry[3]})
        run_matrix(args.runs, only, raw)
    lines = load(raw)
    refuse_inexact(lines, raw)
    table = medians(lines)
    tables_path = os.path.join(results, "tables.md")
    measured_on = machine_of(tables_path, args.report_only)
    with open(tables_path, "w") as f:
        f.write(f"Machine: {measured_on}\n\n" + tables(table))
    chart(table, os.path.join(results, "chart.svg"))
    print(f"wrote {results}/tables.md and {results}/chart.svg")


if __name__ == "__main__":
    sys.exit(main())
