"""Django's default cache from async code, without a thread hop where none is needed.

Django's async cache methods (``aget``, ``aset``...) run the sync ones in a
worker thread for every backend (``BaseCache``: ``sync_to_async``). The
local-memory cache does no I/O, so from async code its sync methods are
called directly; any other backend (Redis) keeps its async methods.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.dispatch import receiver

# The default cache if it is the local-memory one: every instance of it shares
# one store and lock, so one instance serves every thread and task. Looking
# it up in ``caches`` (a context-local registry) on each call costs more than
# the call itself.
_local: LocMemCache | None = None
_resolved = False


def _local_cache() -> LocMemCache | None:
    global _local, _resolved
    if not _resolved:
        backend = caches["default"]
        _local = backend if isinstance(backend, LocMemCache) else None
        _resolved = True
    return _local


@receiver(setting_changed)
def _forget(setting: str, **kwargs: Any) -> None:
    """Called when a test overrides a setting: look the cache up again."""
    global _resolved
    if setting == "CACHES":
        _resolved = False


def is_local() -> bool:
    """Return whether the default cache lives in this process's memory (no other process shares it)."""
    return _local_cache() is not None


async def cache_call(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``cache.<method>`` (``get``, ``set``, ``get_many``...) from async code; return its result."""
    local = _local_cache()
    if local is not None:
        return getattr(local, method)(*args, **kwargs)
    return await getattr(caches["default"], f"a{method}")(*args, **kwargs)
