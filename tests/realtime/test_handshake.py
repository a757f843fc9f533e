"""The handshake bridge: Django's MIDDLEWARE decides every WebSocket handshake."""

from __future__ import annotations

import inspect
import threading

import django
import pytest
from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.middleware.csrf import CsrfViewMiddleware
from django.test import override_settings
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import LazyObject, SimpleLazyObject, empty

from project.asgi import build_application
from realtime.handshake import DjangoMiddlewareWebSocketRouter
from realtime.models import ApiToken
from tests.asgi import HOST, echo_application, http, make_user, session_cookie, ws

pytestmark = pytest.mark.django_db(transaction=True)

# A topic's WebSocket: the echo topic's (tests/realtime/echo.py), through echo_application().
TOPIC = "/ws/echo/lobby/"


def echo_app() -> ProtocolTypeRouter:
    """Return an app whose WebSocket routes report the scope the middleware built."""
    return ProtocolTypeRouter({"websocket": DjangoMiddlewareWebSocketRouter("tests.ws_routes")})


async def refused(comm) -> bool:
    """Return whether the handshake was closed before accept (HTTP 403 on a real server)."""
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return not connected


async def test_consumer_sees_the_same_user_and_session_as_a_view():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    comm = ws("/echo/x/", cookie=cookie, app=echo_app())
    assert (await comm.connect())[0]
    seen = await comm.receive_json_from()
    await comm.disconnect()
    assert seen == {
        "authenticated": True,
        "username": "alice",
        "session_key": cookie.split("=", 1)[1],
        "route": {"name": "x"},
    }


async def test_anonymous_handshake_reaches_consumer_as_anonymous_user():
    comm = ws("/echo/x/", app=echo_app())
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["authenticated"] is False
    await comm.disconnect()


async def test_a_topic_refuses_handshake_without_identity():
    assert await refused(ws(TOPIC, app=echo_application()))


async def test_unknown_websocket_path_is_refused():
    alice = await make_user("alice")
    assert await refused(ws("/ws/nowhere/", cookie=await session_cookie(alice)))
    assert await refused(ws("/ws/echo/a/b/", cookie=await session_cookie(alice), app=echo_application()))


async def test_middleware_added_to_settings_guards_http_and_websocket_at_once():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    blocked = [("x-blocked", "1")]
    with override_settings(
        MIDDLEWARE=[*settings.MIDDLEWARE, "tests.middleware.RefuseBlockedHeaderMiddleware"]
    ):
        app = echo_application()
        async with http(cookie=cookie, app=app) as client:
            assert (await client.get("/api/me")).status_code == 200
            assert (await client.get("/api/me", headers=dict(blocked))).status_code == 403
        assert not await refused(ws(TOPIC, cookie=cookie, app=app))
        assert await refused(ws(TOPIC, cookie=cookie, headers=blocked, app=app))


async def test_login_required_middleware_guards_consumers_like_views():
    login_required = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, login_required]):
        app = ProtocolTypeRouter(
            {"websocket": DjangoMiddlewareWebSocketRouter("tests.ws_routes"), "http": build_application()}
        )
        async with http(app=app) as client:
            response = await client.get("/")
        assert response.status_code == 302 and "/accounts/login/" in response.headers["location"]
        assert await refused(ws("/echo/x/", app=app))
        # @login_not_required works on a consumer exactly as on a view.
        assert not await refused(ws("/public/echo/x/", app=app))
    assert not await refused(ws("/echo/x/", app=echo_app()))


async def test_foreign_origin_is_refused():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    assert await refused(ws(TOPIC, app=echo_application(), cookie=cookie, origin="http://evil.example"))
    assert await refused(ws(TOPIC, app=echo_application(), cookie=cookie, origin=f"https://{HOST}"))


async def test_csrf_trusted_origin_is_accepted():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://app.example"]):
        assert not await refused(
            ws(TOPIC, app=echo_application(), cookie=cookie, origin="https://app.example")
        )
        assert await refused(ws(TOPIC, app=echo_application(), cookie=cookie, origin="https://other.example"))


async def test_secure_websocket_expects_https_origin():
    alice = await make_user("alice")
    comm = ws(TOPIC, app=echo_application(), cookie=await session_cookie(alice), origin=f"https://{HOST}")
    comm.scope["scheme"] = "wss"
    assert not await refused(comm)


async def test_disallowed_host_is_refused():
    alice = await make_user("alice")
    comm = ws(TOPIC, app=echo_application(), cookie=await session_cookie(alice), origin=None)
    comm.scope["headers"] = [(b"host", b"evil.example"), *comm.scope["headers"][1:]]
    assert await refused(comm)


async def test_bearer_token_header_authenticates_a_websocket():
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    comm = ws("/echo/x/", origin=None, headers=[("authorization", f"Bearer {raw}")], app=echo_app())
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["username"] == "alice"
    await comm.disconnect()


async def test_access_token_query_parameter_authenticates_a_websocket_only():
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    assert not await refused(ws(f"{TOPIC}?access_token={raw}", app=echo_application()))
    async with http() as client:
        assert (await client.get(f"/api/me?access_token={raw}")).status_code == 401


async def test_revoked_or_unknown_token_is_refused():
    alice = await make_user("alice")
    token, raw = await ApiToken.aissue(alice)
    token.revoked = True
    await token.asave()
    assert await refused(ws(f"{TOPIC}?access_token={raw}", app=echo_application()))
    assert await refused(ws(TOPIC, app=echo_application(), headers=[("authorization", "Bearer nope")]))


async def test_token_of_deactivated_user_is_refused():
    alice = await make_user("alice", is_active=False)
    _, raw = await ApiToken.aissue(alice)
    assert await refused(ws(f"{TOPIC}?access_token={raw}", app=echo_application()))


class ThreadRecordingMiddleware(MiddlewareMixin):
    """Records the thread each hook of a MiddlewareMixin-style middleware runs in."""

    threads: list[tuple[str, int]] = []

    def process_request(self, request):
        self.threads.append(("request", threading.get_ident()))

    def process_view(self, request, view, args, kwargs):
        self.threads.append(("view", threading.get_ident()))

    def process_response(self, request, response):
        request.session.get("x")  # the session is read in the same thread too
        self.threads.append(("response", threading.get_ident()))
        return response


async def test_the_whole_stack_runs_in_one_worker_thread_hop():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    ThreadRecordingMiddleware.threads = []
    recording = "tests.realtime.test_handshake.ThreadRecordingMiddleware"
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, recording]):
        app = echo_application()
        assert not await refused(ws(TOPIC, cookie=cookie, app=app))
    hooks = dict(ThreadRecordingMiddleware.threads)
    assert set(hooks) == {"request", "view", "response"}
    assert len(set(hooks.values())) == 1, "every hook ran in the same thread"
    assert threading.get_ident() not in hooks.values(), "and not on the event loop"


# The Django versions whose private API realtime/handshake.py was read against.
READ_AGAINST = {(5, 2), (6, 0), (6, 1)}


def test_private_django_api_the_bridge_relies_on_is_unchanged():
    """Fails loudly on a Django upgrade: re-read realtime/handshake.py against the new version."""
    assert django.VERSION[:2] in READ_AGAINST, (
        f"realtime/handshake.py was read against Django {sorted(READ_AGAINST)}, not {django.get_version()}"
    )
    assert callable(BaseHandler._get_response)
    assert callable(BaseHandler.load_middleware)
    handler = BaseHandler()
    handler.load_middleware(is_async=False)
    assert isinstance(handler._view_middleware, list)
    assert not inspect.iscoroutinefunction(handler._middleware_chain), "the chain must be sync"
    assert callable(CsrfViewMiddleware._origin_verified)
    lazy = SimpleLazyObject(lambda: "user")
    assert lazy._wrapped is empty
    lazy._setup()
    assert lazy._wrapped == "user"
    assert isinstance(lazy, LazyObject)
