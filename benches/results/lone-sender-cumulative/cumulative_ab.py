"""Where the lone sender stands after issue 12's work: builds alternated in one session,
ROUNDS rounds, one row per run appended to OUT. The variants (a build's `wspush-bench` and
the `wspush` beside it, in a directory named by an environment variable; a variant whose
variable is unset is left out, VARIANTS=a,b keeps only those named):

- `backplane-thread` (START_DIR, a build of cc435ab): the build before the lone-sender
  work, a subscriber thread that reads Redis and wakes the worker of each message's id;
- `carried` (CARRIED_DIR, a build of 7d68813, or of main after 60beebc's revert, the same
  engine): worker 0 hosts the backplane and carries worker 1's pass for a lone message;
- `carried-1-worker`: the same with `--workers 1`: no other worker to hand to or carry
  for, so one wake-up, one read from Redis and one write per message, the floor of a
  design that writes each message when it arrives;
- `carried-4-workers`, `carried-history` (`--history-size 100`; the messages still come
  on the compat channel, which has no positions: this adds the reader's connection),
  `carried-3-workers-history`, and `carried-history-http` (`--via http --history-size 100
  --with-redis`: each message is posted to the node, stored in Redis by its publisher and
  comes back from the subscriber with its position, so a message for worker 1 is a
  carried `SendAt`): the carrying where the benchmarks before did not measure it;
- `own-wakeups`, `own-wakeups-1-worker` (OWN_DIR, a build of 60beebc, reverted): the
  backplane's parts polled only on their own wake-up, the subscriber's rare waits kept
  across its turns;
- `uws`: Bun's `Bun.serve` with one Redis subscriber (this checkout's load generator).

`latency-10k` (10,000 msg/s to 1,000 sockets, compat channel, **sustained**) by default;
ENTRIES names bursts instead (see `benches/alternate.py`; the variants with settings skip
them, and uws does unless UWS_BURSTS=1). CARRIED_COMMIT names the build in CARRIED_DIR (7d68813 if unset). Every
run must be exact.

    cargo build --release -p wspush -p wspush-bench
    benches/build-commit.sh cc435ab /tmp/startbin
    benches/build-commit.sh 7d68813 /tmp/carriedbin
    benches/build-commit.sh 60beebc /tmp/ownbin
    START_DIR=/tmp/startbin CARRIED_DIR=/tmp/carriedbin OWN_DIR=/tmp/ownbin \
        python3 benches/results/lone-sender-cumulative/cumulative_ab.py OUT.jsonl ROUNDS
"""
import os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import lone_sender
from alternate import alternate


def build(variable, name, commit, one_worker=False, settings=()):
    """The variants of the build in `$variable`: as it is, and with each of `settings`
    (a suffix and the arguments that make it), which skip the bursts."""
    if not os.environ.get(variable):
        return []
    bench = os.path.join(os.environ[variable], "wspush-bench")
    variants = [{"name": name, "bench": bench, "target": "wspush", "build": commit}]
    for suffix, args in ([("1-worker", ["--workers", "1"])] if one_worker else []) + list(settings):
        variants.append({"name": f"{name}-{suffix}", "bench": bench, "target": "wspush", "build": commit,
                         "args": args, "latency_only": True})
    return variants


VARIANTS = (build("START_DIR", "backplane-thread", "cc435ab")
            + build("CARRIED_DIR", "carried", os.environ.get("CARRIED_COMMIT", "7d68813"), one_worker=True,
                    settings=[("4-workers", ["--workers", "4"]), ("history", ["--history-size", "100"]),
                              ("3-workers-history", ["--workers", "3", "--history-size", "100"]),
                              ("history-http", ["--via", "http", "--history-size", "100", "--with-redis"])])
            + build("OWN_DIR", "own-wakeups", "60beebc", one_worker=True)
            + [{"name": "uws", "bench": lone_sender.BENCH, "target": "uws",
                "latency_only": not os.environ.get("UWS_BURSTS")}])
if os.environ.get("VARIANTS"):
    VARIANTS = [v for v in VARIANTS if v["name"] in os.environ["VARIANTS"].split(",")]
entries = os.environ.get("ENTRIES", "latency-10k").split(",")
alternate(sys.argv[1], int(sys.argv[2]), VARIANTS, entries)
