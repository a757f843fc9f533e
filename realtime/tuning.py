"""Process settings for a long-lived server holding thousands of sockets.

Each open WebSocket is many small container objects (uvicorn's protocol
and parser, the consumer, its scope, user and session), all of which
CPython's cyclic garbage collector scans again whenever the number of
objects grows by a quarter. With the default thresholds, a connect storm of
thousands of clients runs repeated full collections of the whole heap, a
large share of the server's CPU (measured: bench/README.md, What changed,
and what each change bought, "GC tuning"). Two standard remedies:

* ``gc.freeze()`` once the app is loaded: Django, the URL conf and the
  models live for the whole process, so they leave the collector's scans
  for good.
* A young-generation threshold of ``GEN0_THRESHOLD`` allocations instead of
  CPython's default 700: far fewer collections, each still cheap; garbage
  cycles live a little longer.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Called once the ASGI app is built: freeze what startup allocated, and collect less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
