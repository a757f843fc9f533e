"""WebSocket routes used only by tests: a consumer that reports its scope."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.decorators import login_not_required
from django.urls import path


class ScopeEchoConsumer(AsyncJsonWebsocketConsumer):
    """Accept anyone and report who the middleware stack said they are."""

    async def connect(self):
        await self.accept()
        user, session = self.scope["user"], self.scope["session"]
        await self.send_json(
            {
                "authenticated": user.is_authenticated,
                "username": user.get_username() if user.is_authenticated else "",
                "session_key": session.session_key if session is not None else None,
                "route": self.scope["url_route"]["kwargs"],
            }
        )


urlpatterns = [
    path("echo/<str:name>/", ScopeEchoConsumer.as_asgi()),
    path("public/echo/<str:name>/", login_not_required(ScopeEchoConsumer.as_asgi())),
]
