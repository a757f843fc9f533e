"""Summarise a py-spy ``--format raw`` profile: where the server's time goes.

.venv/bin/python bench/profiles.py bench/results/work-*/realtime-uvicorn.rate-1000.pyspy.txt
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarize(path: Path, top: int = 20, focus: tuple[str, ...] = ("realtime/", "channels/")) -> str:
    """Return the hottest frames of a collapsed-stack profile, self and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):  # a recursive frame counts once per sample
            inclusive[frame] += samples
    if not total:
        return f"{path}: no samples\n"
    lines = [f"{path.name}: {total} samples", "", "self time (the frame itself was running):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", f"inclusive time of {', '.join(focus)} frames (the frame or its callees):"]
    hot = [(f, n) for f, n in inclusive.most_common() if any(part in f for part in focus)]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in hot[:top]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    for profile in args.profiles:
        print(summarize(profile, args.top))
