"""Micro-benchmark: group_send + receive cost per delivered message, stock vs fast layer.

For each group size N, N member channels join one group; each round is one
group_send followed by every member receiving its copy. Two receive patterns:

* queued:  the members' messages are already queued when they are received
           (pure layer cost: group_send + N receives that do not block);
* waiting: N consumer tasks loop on receive() and are blocked in it when
           group_send runs, as real consumers are (adds the event loop's
           wake-up of each receiver and the tasks' start).

Each cell is the best of --repeat runs (the machine may be busy). Takes ~2 minutes.
Reproduce: .venv/bin/python bench/layer_microbench.py [--sizes 100 1000 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.layers import InMemoryChannelLayer  # noqa: E402

from realtime.layers import FastInMemoryChannelLayer  # noqa: E402

LAYERS = {"stock": InMemoryChannelLayer, "fast": FastInMemoryChannelLayer}
MESSAGE = {"type": "realtime.event", "text": '{"type":"message","body":"hello"}', "id": 1}
Mode = Callable[[type, int, int], Awaitable[float]]
BUDGET = {"stock": 5_000, "fast": 50_000}  # deliveries per measurement (at least one round)


async def joined(layer_cls: type, size: int) -> tuple[InMemoryChannelLayer, list[str]]:
    layer = layer_cls(capacity=100)
    channels = [await layer.new_channel() for _ in range(size)]
    for channel in channels:
        await layer.group_add("room.bench", channel)
    return layer, channels


async def queued(layer_cls: type, size: int, rounds: int) -> float:
    layer, channels = await joined(layer_cls, size)
    start = time.perf_counter()
    for _ in range(rounds):
        await layer.group_send("room.bench", MESSAGE)
        for channel in channels:
            await layer.receive(channel)
    return time.perf_counter() - start


async def waiting(layer_cls: type, size: int, rounds: int) -> float:
    layer, channels = await joined(layer_cls, size)
    received = 0
    done = asyncio.Event()

    async def consumer(channel: str) -> None:
        nonlocal received
        for _ in range(rounds):
            await layer.receive(channel)
            received += 1
            if received % size == 0:
                done.set()

    start = time.perf_counter()  # the consumers' first receive() counts too: the stock one scans
    tasks = [asyncio.create_task(consumer(channel)) for channel in channels]
    await asyncio.sleep(0)  # every consumer is now blocked in receive()
    for _ in range(rounds):
        done.clear()
        await layer.group_send("room.bench", MESSAGE)
        await done.wait()
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def measure(mode: Mode, name: str, size: int, repeat: int) -> tuple[int, float]:
    """Return (rounds, microseconds per delivered message): the best of ``repeat`` fresh event loops."""
    rounds = max(1, BUDGET[name] // size)  # the stock layer is quadratic: fewer rounds
    elapsed = min(asyncio.run(mode(LAYERS[name], size, rounds)) for _ in range(repeat))
    return rounds, elapsed / (rounds * size) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per cell")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}; deliveries per run: {BUDGET}")
    print(f"us per delivered message (group_send + receive), best of {args.repeat}, lower is better\n")
    header = f"{'mode':<8} {'members':>8} {'rounds s/f':>13} {'stock us':>10} {'fast us':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for mode in (queued, waiting):
        for size in args.sizes:
            stock_rounds, stock = measure(mode, "stock", size, args.repeat)
            fast_rounds, fast = measure(mode, "fast", size, args.repeat)
            rounds = f"{stock_rounds}/{fast_rounds}"
            print(
                f"{mode.__name__:<8} {size:>8} {rounds:>13} {stock:>10.2f} {fast:>9.2f} {stock / fast:>8.0f}x"
            )
    sizes = " ".join(map(str, args.sizes))
    print(f"\nReproduce: .venv/bin/python bench/layer_microbench.py --sizes {sizes} --repeat {args.repeat}")


if __name__ == "__main__":
    main()
