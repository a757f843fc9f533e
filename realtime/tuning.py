"""Process settings for a long-lived server holding thousands of sockets.

Each open WebSocket is about a hundred small container objects (uvicorn's
protocol and parser, the consumer, its scope, user and session), all of
which CPython's cyclic garbage collector scans again whenever the number of
objects grows by a quarter. With the default thresholds, connecting 10,000
clients ran eleven full collections of up to a million objects: 6.4 of the
21 CPU seconds the server spent (bench/README.md). Two standard remedies:

* ``gc.freeze()`` once the app is loaded: Django, the URL conf and the
  models (about 100,000 objects) live for the whole process, so they leave
  the collector's scans for good.
* A young-generation threshold of 50,000 allocations instead of 700: far
  fewer collections, each still cheap; garbage cycles live a little longer
  (a few megabytes at most).
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
