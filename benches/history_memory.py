#!/usr/bin/env python3
"""What history costs in Redis, per id and per kept message (cluster mode).

    python3 benches/history_memory.py [--ids 1000] [--messages 100] [--size 100] [--history-size 100]

Starts its own redis-server (no persistence) and one `wspush --redis ... --history-size N`
node (target/release/wspush, built if missing), pushes MESSAGES messages of SIZE bytes to each
of IDS ids through `POST /socket/{id}` (the real append path: Lua script, stream, meta hash),
then reads Redis's own accounting: `INFO memory` used_memory before and after, and `MEMORY
USAGE` of one id's stream and meta hash. Prints one JSON line (append it to a results file:
benches/results/history-memory.jsonl). Memory, not speed: the figures do not depend on the
machine's load.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *map(str, args)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or "Could not connect" in out.stdout + out.stderr:
        raise RuntimeError(f"redis-cli {args}: {out.stderr or out.stdout}")
    return out.stdout.strip()


def used_memory(port):
    info = redis_cli(port, "INFO", "memory")
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    sys.exit("no used_memory in INFO memory")


def wait(what, condition, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100, help="messages pushed per id")
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--history-size", type=int, default=100)
    args = parser.parse_args()

    binary = os.path.join(ROOT, "target", "release", "wspush")
    if not os.path.exists(binary):
        subprocess.run(["cargo", "build", "--release", "-p", "wspush"], cwd=ROOT, check=True)
    redis_port, ws_port, api_port = free_port(), free_port(), free_port()
    children = []
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(redis)
        wait("redis", lambda: redis_cli(redis_port, "PING") == "PONG")
        node = subprocess.Popen(
            [binary, "--ws-listen", f"127.0.0.1:{ws_port}", "--api-listen", f"127.0.0.1:{api_port}",
             "--redis", f"redis://127.0.0.1:{redis_port}", "--history-size", str(args.history_size)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(node)
        api = f"http://127.0.0.1:{api_port}"
        wait("the node", lambda: urllib.request.urlopen(f"{api}/healthz", timeout=2).status == 200)
        before = used_memory(redis_port)
        body = b"x" * args.size
        for m in range(args.messages):
            for i in range(args.ids):
                request = urllib.request.Request(f"{api}/socket/id{i}", data=body, method="POST")
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.load(response)
                    if answer.get("offset") != m + 1:
                        sys.exit(f"unexpected answer {answer} for message {m + 1} of id{i}")
        after = used_memory(redis_port)
        stream = int(redis_cli(redis_port, "MEMORY", "USAGE", "wspush:h:id0", "SAMPLES", "0"))
        meta = int(redis_cli(redis_port, "MEMORY", "USAGE", "wspush:m:id0", "SAMPLES", "0"))
        kept = int(redis_cli(redis_port, "XLEN", "wspush:h:id0"))
        result = {
            "scenario": "history-memory-redis",
            "redis_version": redis_cli(redis_port, "INFO", "server").split("redis_version:")[1].split()[0],
            "ids": args.ids,
            "messages_per_id": args.messages,
            "message_bytes": args.size,
            "history_size": args.history_size,
            "kept_per_id": kept,
            "used_memory_delta_bytes": after - before,
            "bytes_per_id": round((after - before) / args.ids),
            "stream_bytes_one_id": stream,
            "meta_bytes_one_id": meta,
            "stream_bytes_per_kept_message": round(stream / kept, 1),
        }
        print(json.dumps(result))
    finally:
        for child in reversed(children):
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
