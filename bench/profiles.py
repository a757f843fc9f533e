"""Summarise a py-spy ``--format raw`` profile: where the server's time goes.

.venv/bin/python bench/profiles.py bench/results/work-*/realtime-uvicorn.rate-1000.pyspy.txt

Four views of the same samples: by thread (the event loop, the realtime DB
thread, others), by area (the package of the innermost frame, which is
where the CPU was), the hottest frames themselves, and the inclusive time
of the project's and Channels' frames.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# Area of a frame, by the first pattern its text contains (order matters).
AREAS = [
    ("server: uvicorn/websockets/httptools protocol, frames, socket writes", ("uvicorn/", "websockets/")),
    ("Django ORM and DB driver", ("django/db/", "sqlite3", "psycopg")),
    ("Django middleware, sessions, auth, requests", ("django/",)),
    ("realtime.delivery: inline sends, drains", ("realtime/delivery.py",)),
    ("realtime.layers: group_send, queues", ("realtime/layers.py",)),
    ("realtime.presence: snapshots, diffs, the heartbeat", ("realtime/presence.py", "realtime/registry.py")),
    ("realtime: other modules", ("realtime/",)),
    ("Channels", ("channels/",)),
    ("asgiref (sync_to_async, Local)", ("asgiref/",)),
    ("json encode/decode", ("json/",)),
    ("asyncio/uvloop scheduling", ("asyncio/", "runners.py", "uvloop")),
    ("threads, queues, futures", ("threading.py", "queue.py", "concurrent/")),
]


def thread_of(frames: list[str]) -> str:
    """Return which thread a stack ran on, from its root frames."""
    root = ";".join(frames[:8])
    if "_bootstrap" not in frames[0]:
        return "event loop (main thread)"
    if "realtime/db.py" in root or "_work (realtime/db.py" in ";".join(frames):
        return "realtime DB thread"
    return "other threads"


def area_of(frames: list[str]) -> str:
    """Return the area of the innermost frame that belongs to a known package."""
    for frame in reversed(frames):
        for name, patterns in AREAS:
            if any(pattern in frame for pattern in patterns):
                return name
    return "other"


def summarize(path: Path, top: int = 20, focus: tuple[str, ...] = ("realtime/", "channels/")) -> str:
    """Return the views of a collapsed-stack profile as text."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        threads[thread_of(frames)] += samples
        areas[area_of(frames)] += samples
        for frame in set(frames):  # a recursive frame counts once per sample
            inclusive[frame] += samples
    if not total:
        return f"{path}: no samples\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{path.name}: {total} samples", "", "by thread:"]
    lines += [f"  {pct(n)}  {name}" for name, n in threads.most_common()]
    lines += ["", "by area (package of the innermost frame: where the CPU was):"]
    lines += [f"  {pct(n)}  {name}" for name, n in areas.most_common()]
    lines += ["", "self time (the frame itself was running):"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", f"inclusive time of {', '.join(focus)} frames (the frame or its callees):"]
    hot = [(f, n) for f, n in inclusive.most_common() if any(part in f for part in focus)]
    lines += [f"  {pct(n)}  {frame}" for frame, n in hot[:top]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for profile in args.profiles:
        print(summarize(profile, args.top))
