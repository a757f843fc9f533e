"""Create N bench users with real, logged-in Django sessions, and log in through the form.

Run as a script under the settings of the server being measured (the project's
or the tutorial's), after ``migrate``::

    DJANGO_SETTINGS_MODULE=project.settings python bench/sessions.py --count 1000 --out s.json

It writes ``[{"username": ..., "session": <session key>}, ...]``. The sessions are
exactly what ``django.contrib.auth.login`` stores (user id, backend, session
auth hash), so every WebSocket handshake still goes through the session and
authentication middleware; only the password hashing is done once instead of
N times, which would otherwise dominate the setup (PBKDF2 is slow on purpose).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

PASSWORD = "bench-password-not-secret"
USERNAME_PREFIX = "bench"


def create_sessions(count: int) -> list[dict[str, str]]:
    """Create ``count`` users and one authenticated session each; return them."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    user_model = get_user_model()
    password_hash = make_password(PASSWORD)  # once: every bench user shares it
    names = [f"{USERNAME_PREFIX}{i:05d}" for i in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [user_model(username=name, password=password_hash) for name in names if name not in existing],
        batch_size=500,
    )
    users = {u.username: u for u in user_model.objects.filter(username__in=names)}
    store_class = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    backend = settings.AUTHENTICATION_BACKENDS[0]
    # The same hash for all: it is an HMAC of the (shared) password hash.
    auth_hash = users[names[0]].get_session_auth_hash()
    expire = timezone.now() + timedelta(days=1)
    model = store_class.get_model_class()  # database-backed engines only (the default)
    rows, out = [], []
    for name in names:
        store = store_class()
        key = store._get_new_session_key()
        data = {SESSION_KEY: str(users[name].pk), BACKEND_SESSION_KEY: backend, HASH_SESSION_KEY: auth_hash}
        rows.append(model(session_key=key, session_data=store.encode(data), expire_date=expire))
        out.append({"username": name, "session": key})
    model.objects.bulk_create(rows, batch_size=500)
    return out


def login_via_form(base_url: str, username: str, password: str = PASSWORD) -> str:
    """Log in through the real ``/accounts/login/`` form; return the new session key."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as client:
        page = client.get("/accounts/login/")
        page.raise_for_status()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        token = match.group(1) if match else client.cookies["csrftoken"]
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        if response.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"login form as {username}: HTTP {response.status_code}, no session")
        me = client.get("/api/me")
        if me.status_code != 200 or me.json().get("username") != username:
            raise RuntimeError(f"/api/me after login: HTTP {me.status_code} {me.text[:200]}")
        return client.cookies["sessionid"]


def main() -> None:
    """Parse arguments, set Django up, create the sessions and write them out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import django

    # Run as a script, sys.path[0] is bench/; the settings module lives elsewhere
    # (the repository root for the project, bench/tutorial for the tutorial).
    sys.path.insert(0, str(Path.cwd()))
    django.setup()
    args.out.write_text(json.dumps(create_sessions(args.count)))


if __name__ == "__main__":
    main()
