"""What the Prometheus metrics add to a publish and to a connection, in-process, metrics on against off.

End-to-end runs (make bench's second run) move by more than the metrics
could cost, so this isolates it. Two child processes, ``REALTIME_METRICS=1``
and ``0``, run the same code in turns:

* publish: ``realtime.publish()`` of one event to a topic whose group has N
  members on the real in-process layer; each member's sink takes the message
  as an idle socket's does, without the socket write (the same in both).
  Microseconds per publish, best of --repeat.
* connection: what a connection's lifecycle records (opened, its catch-up,
  closed with its duration), per connection.

Then the difference, and what it comes to at the publish rates of the
scenarios. Takes about a minute.
Reproduce: .venv/bin/python bench/metrics_cost.py [--sizes 1 100 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 200_000  # deliveries per measurement
CONNECTIONS = 20_000  # connection lifecycles per measurement


async def publish_cost(size: int, repeat: int) -> float:
    """Return the best microseconds per publish to a group of ``size`` idle local members."""
    from channels.layers import get_channel_layer

    from realtime import Topic, publish

    class BenchTopic(Topic):
        kind = "bench"

    topic, layer = BenchTopic(str(size)), get_channel_layer()
    for _ in range(size):
        channel = await layer.new_channel()
        layer.attach(channel, lambda message: True)
        await layer.group_add(topic.group, channel)
    rounds = max(1, BUDGET // size)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for seq in range(rounds):
            await publish(topic, {"type": "message", "id": seq, "text": "hello"})
        best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e6


def connection_cost(repeat: int) -> float:
    """Return the best microseconds a connection's metrics take (open, catch-up, close)."""
    from realtime import metrics

    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(CONNECTIONS):
            bound = metrics.connection_opened("websocket", "bench")
            metrics.caught_up("bench", 1)
            metrics.connection_closed(bound, 1000, 12.5)
        best = min(best, (time.perf_counter() - start) / CONNECTIONS)
    return best * 1e6


def child(sizes: list[int], repeat: int) -> None:
    """Measure in this process (metrics as REALTIME_METRICS says) and print JSON."""
    import django

    django.setup()

    async def main() -> dict:
        return {str(size): await publish_cost(size, repeat) for size in sizes}

    print(json.dumps({"publish": asyncio.run(main()), "connection": connection_cost(repeat)}))


def measure(metrics_on: bool, sizes: list[int], repeat: int) -> dict:
    """Run one child process with the metrics on or off; return its figures."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "REALTIME_METRICS": "1" if metrics_on else "0",
    }
    env.pop("REDIS_URL", None)  # the in-process layer: no network in the figure
    command = [sys.executable, __file__, "--child", "--sizes", *map(str, sizes), "--repeat", str(repeat)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def best_of(runs: list[dict], key: str, size: str | None = None) -> float:
    return min(run[key][size] if size else run[key] for run in runs)


def main() -> None:
    """Measure on and off in turns; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="child processes per side, in turns")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.sizes, args.repeat)
        return
    on, off = [], []
    for _ in range(args.rounds):
        off.append(measure(False, args.sizes, args.repeat))
        on.append(measure(True, args.sizes, args.repeat))
    print("| what | metrics off, us | metrics on, us | added, us |")
    print("|---|---|---|---|")
    for size in map(str, args.sizes):
        before, after = best_of(off, "publish", size), best_of(on, "publish", size)
        print(f"| one publish, {size} recipient(s) | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
    before, after = best_of(off, "connection"), best_of(on, "connection")
    print(
        f"| one connection's open, catch-up and close | {before:.2f} | {after:.2f} | {after - before:+.2f} |"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
