"""realtime: the core of the template. An app imports what it needs from here, and nothing else.

    from realtime import Topic, Opening, TopicConsumer, stream_view, publish

Names are resolved on first use (PEP 562), so ``import realtime`` is safe
while Django loads its apps, before models can be imported.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the core module that defines it.
_EXPORTS = {
    # Topics: what a live connection subscribes to (realtime.topics).
    "Topic": "topics",
    "Opening": "topics",
    "Event": "topics",
    "user_public": "topics",
    "topic_for": "topics",
    # Transports: the WebSocket consumer and the SSE view of any topic.
    "TopicConsumer": "consumers",
    "stream_view": "sse",
    "Connection": "connection",
    # The bus.
    "publish": "events",
    "publish_sync": "events",
    "publish_to_user": "events",
    "publish_many": "events",
    "encode": "events",
    "require_shared_layer": "services",
    # Errors and the JSON API's plumbing.
    "ClientError": "errors",
    "parse_after": "errors",
    "api": "http",
    "json_body": "http",
    "json_error": "http",
    # Database work from async code, one hop to the realtime DB thread.
    "db_call": "db",
    # Presence, limits, background jobs.
    "topic_users": "presence",
    "online_counts": "presence",
    "rate_allow": "ratelimit",
    "register_job": "background",
    # Tasks: fire-and-forget work kept referenced until done; process state the tests reset.
    "spawn": "process",
    "process": "process",
    # An app's own metrics and client error codes (realtime.metrics; the core counts the rest itself).
    "counter": "app_metrics",
    "register_error_codes": "app_metrics",
    # An app's own settings, under its own prefix: the setting, else the environment, else its default.
    "app_setting": "appsettings",
    # Close codes.
    "SESSION_ENDED": "codes",
    "USER_DEACTIVATED": "codes",
    "SERVICE_RESTART": "codes",
    "TRY_AGAIN_LATER": "codes",
    "SERVER_ERROR": "codes",
}
# Names whose attribute in the module differs from the public name.
_RENAMED = {
    "rate_allow": "allow",
    "register_job": "register",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public ``name`` from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"realtime.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
