"""A tiny topic for the core's own tests: the recipe for a new app, in one file.

``echo.<name>`` keeps its events in memory with increasing ids, replays
them after an id, and has two frames: ``say`` (publish to everyone) and
``crash`` (a handler that fails). ``closed`` may not be joined; ``broken``
fails while opening.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import OperationalError
from django.urls import path

from realtime import Opening, Topic, TopicConsumer, publish, stream_view, user_public

# name -> events, in id order (a stand-in for an app's database table)
LOG: dict[str, list[dict]] = defaultdict(list)


def said(name: str, text: str) -> dict:
    """Store and return a new ``said`` event of ``echo.<name>``."""
    event = {"type": "said", "id": len(LOG[name]) + 1, "text": text}
    LOG[name].append(event)
    return event


class EchoTopic(Topic):
    kind = "echo"
    presence = True

    def __init__(self, name: str) -> None:
        super().__init__(name)

    def can_join(self, user) -> bool:
        return super().can_join(user) and self.key != "closed"

    async def open(self, user, after: int | None) -> Opening:
        if self.key == "broken":
            raise RuntimeError("the topic failed while opening")
        log = LOG[self.key]
        last_id = log[-1]["id"] if log else 0
        return Opening(
            hello={"type": "hello", "user": user_public(user), "echo": self.key, "last_id": last_id},
            floor=last_id if after is None else after,
            catch_up=[e for e in log if after is not None and e["id"] > after],
        )

    def event_id(self, event: dict) -> int | None:
        return event["id"] if event["type"] == "said" else None

    async def frame_say(self, connection, frame: dict) -> None:
        await publish(self, said(self.key, str(frame.get("text", ""))))

    async def frame_crash(self, connection, frame: dict) -> None:
        raise RuntimeError("the frame handler failed")

    async def frame_store(self, connection, frame: dict) -> None:
        raise OperationalError("the database is down")  # as a handler's query would, mid-outage


websocket_urlpatterns = [path("ws/echo/<str:name>/", TopicConsumer.as_asgi(topic=EchoTopic))]
# ROOT_URLCONF for the tests that stream it over SSE; the project's URLs stay reachable.
urlpatterns = [path("sse/echo/<str:name>/", stream_view(EchoTopic))]
