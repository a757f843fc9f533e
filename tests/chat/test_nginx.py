"""docs/nginx/realtime.conf in front of two server processes: WebSockets upgrade, SSE unbuffered."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import websockets

from tests.chat.test_cluster import start_cluster, stop_cluster
from tests.conftest import ROOT, free_port
from tests.sse_client import login, sse

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """Two Daphne processes over Redis behind nginx running docs/nginx/realtime.conf; yield nginx's URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(nginx):
        pytest.fail("nginx is needed for the reverse-proxy test: apt-get install nginx-light (.ci/run does)")
    tmp = tmp_path_factory.mktemp("nginx")
    a, b = start_cluster(tmp, REDIS_URL)
    port = free_port()
    site = (ROOT / "docs/nginx/realtime.conf").read_text()
    site = re.sub(r"server 127\.0\.0\.1:8000 ", f"server 127.0.0.1:{a.port} ", site)
    site = re.sub(r"server 127\.0\.0\.1:8001 ", f"server 127.0.0.1:{b.port} ", site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp / "realtime.conf").write_text(site)
    (tmp / "nginx.conf").write_text(
        f"""
        daemon off;
        user root;
        worker_processes 1;
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log;
        events {{}}
        http {{
            access_log {tmp}/access.log;
            client_body_temp_path {tmp}/body;
            proxy_temp_path {tmp}/proxy;
            fastcgi_temp_path {tmp}/fastcgi;
            uwsgi_temp_path {tmp}/uwsgi;
            scgi_temp_path {tmp}/scgi;
            include {tmp}/realtime.conf;
        }}
        """
    )
    process = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not come up; see {tmp}/error.log")
        time.sleep(0.1)
    yield url, (a, b)
    process.terminate()
    process.wait(10)
    stop_cluster((a, b), REDIS_URL)


async def test_websocket_upgrades_through_nginx_and_reaches_both_processes(proxied):
    url, _ = proxied
    room = f"nginx-{uuid.uuid4().hex[:10]}"
    async with login(url, "alice") as alice:
        cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
        sockets = [
            await websockets.connect(
                f"{url.replace('http', 'ws', 1)}/ws/rooms/{room}/",
                additional_headers={"Cookie": cookie, "Origin": url},
            )
            for _ in range(4)  # nginx spreads them over both processes
        ]
        for ws in sockets:
            assert json.loads(await ws.recv())["type"] == "hello"
        response = await alice.post(
            f"/api/rooms/{room}/messages",
            json={"text": "through nginx"},
            headers={"X-CSRFToken": alice.cookies["csrftoken"]},
        )
        assert response.status_code == 201
        for ws in sockets:
            while (event := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "message":
                pass
            assert event == response.json()
            await ws.close()


async def test_sse_is_not_buffered_by_nginx(proxied):
    url, _ = proxied
    room = f"nginx-{uuid.uuid4().hex[:10]}"
    async with login(url, "bob") as bob, sse(bob, f"/sse/rooms/{room}/") as stream:
        # With buffering on, these would sit in nginx until the stream closed.
        assert (await stream.next_event(timeout=3)).event == "hello"
        assert (await stream.next_event(timeout=3)).event == "presence"
        response = await bob.post(
            f"/api/rooms/{room}/messages",
            json={"text": "promptly"},
            headers={"X-CSRFToken": bob.cookies["csrftoken"]},
        )
        assert (await stream.next_event(timeout=3)).data == response.json()


async def test_foreign_origin_is_still_refused_behind_nginx(proxied):
    url, _ = proxied
    async with login(url, "alice") as alice:
        cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{url.replace('http', 'ws', 1)}/ws/rooms/lobby/",
                additional_headers={"Cookie": cookie, "Origin": "http://evil.example"},
            )
    assert refused.value.response.status_code == 403


def test_metrics_are_refused_through_nginx_but_each_process_serves_its_scraper(proxied):
    url, processes = proxied
    # Through nginx every request reaches the app from loopback, which the app lets in:
    # the shipped config refuses /metrics itself, in any spelling that reaches the same URL.
    for path in ("/metrics", "/metrics?format=text", "//metrics", "/%6Detrics", "/metrics/"):
        response = httpx.get(f"{url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert "realtime_" not in response.text, path
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "not_found", "detail": "No such endpoint."}
    # The scraper reaches each process on its own port, from loopback.
    for server in processes:
        direct = httpx.get(f"{server.url}/metrics", timeout=5)
        assert direct.status_code == 200
        assert "realtime_connections_open" in direct.text
