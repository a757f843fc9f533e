"""Django settings for the realtime template, driven by environment variables.

Unset, everything is embedded: SQLite, the in-process channel layer and the
local-memory cache. ``REDIS_URL`` moves the channel layer and the cache (so
presence and rate limits) to Redis; ``DATABASE_URL`` moves the database;
``REALTIME_BUS`` picks the bus between processes (realtime/bus.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Return the environment variable ``name`` read as a boolean."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Return the comma-separated environment variable ``name`` as a list."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
# The fallback key only ever serves DEBUG; production must set its own, and
# without one it stops here rather than answering every request with a 500.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is off. Set DJANGO_SECRET_KEY to a long "
            "random value (python3 -c 'import secrets; print(secrets.token_urlsafe(50))' prints one), "
            "or run `make serve`, which generates one in .secret_key."
        )
    SECRET_KEY = "django-insecure-realtime-template-development-key"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# One list for HTTP CSRF and WebSocket origins (realtime.handshake reuses it).
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
# Behind a proxy that terminates TLS (docs/deployment.md): trust its
# X-Forwarded-Proto, so requests and wss:// handshakes count as https; then
# cookies are Secure, plain http is redirected to https (but not /healthz,
# which a load balancer may probe directly) and browsers are told to keep to
# https for DJANGO_HSTS_SECONDS (1 hour by default: raise it once https works
# everywhere; 0 turns HSTS off). `make serve` has uvicorn trust the header
# only from FORWARDED_ALLOW_IPS then, and from nobody otherwise.
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "3600"))

INSTALLED_APPS = [
    # The core first: its runserver (Daphne's, with a graceful SIGTERM under the
    # autoreloader) replaces Daphne's, which replaces Django's; Daphne before
    # staticfiles (Daphne's check E001).
    "realtime",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # The apps built on the core (each imports realtime, never the reverse).
    "uploads",
    "chat",
    "ticker",
]

# A strict Content-Security-Policy on every response: scripts, styles and everything else
# (images, fonts, WebSockets, event streams, uploads) from this origin only; no plugins, no
# <base>, forms post here only, no framing (as X-Frame-Options says). The pages hold no inline
# script, style or event handler (page data travels in json_script blocks, which never run),
# so nothing needs a nonce or 'unsafe-inline'. Set a view's own header to loosen it there.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Django 6.0 added the middleware that sets it; on Django 5.2, project.csp sets the same header
# from the same setting. The one version branch outside realtime/handshake.py: drop it with 5.2.
CSP_MIDDLEWARE = (
    "django.middleware.csp.ContentSecurityPolicyMiddleware"
    if django.VERSION >= (6, 0)
    else "project.csp.ContentSecurityPolicyMiddleware"
)

# The one middleware stack: HTTP requests, WebSocket handshakes and SSE
# streams all pass through it (see realtime/handshake.py).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    CSP_MIDDLEWARE,
    "realtime.middleware.DatabaseUnavailableMiddleware",
    "realtime.middleware.ApiBodyErrorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "realtime.auth.BearerTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # The header's links: the pages each installed app declares (realtime/navigation.py).
                "realtime.navigation.pages",
            ],
        },
    },
]

# An empty DATABASE_URL (a compose file's `DATABASE_URL=`) is unset, as for REDIS_URL. Not a
# setting of its own: Django's debug page would show its password (it hides DATABASES').
_database_url = os.environ.get("DATABASE_URL", "").strip()
DATABASES = {
    "default": dj_database_url.parse(
        _database_url or f"sqlite:///{os.environ.get('SQLITE_PATH', BASE_DIR / 'db.sqlite3')}",
        # Under ASGI each request's ORM calls run on a thread of their own, so
        # persistent per-thread connections pile up; close them per request
        # and let PostgreSQL reuse them from a pool instead (below).
        conn_max_age=0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the server read while a test or command writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
if os.environ.get("DJANGO_TEST_DATABASE_NAME"):
    # make test names the test database per run, so two runs on one server never collide.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["DJANGO_TEST_DATABASE_NAME"]}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's psycopg pool (5.1+): connections survive requests without
    # being tied to threads; a broken one is dropped and replaced.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": int(os.environ.get("DATABASE_POOL_SIZE", "10")),
            # Seconds a request waits for a connection before a 503.
            "timeout": 3,
            # psycopg_pool retries a lost connection with a doubling delay until this many
            # seconds, so after an outage of T seconds it could wait about T more (300 by
            # default). Given up sooner, the next request that needs a connection starts a
            # fresh attempt at once: the pool comes back within seconds of the database.
            "reconnect_timeout": 5,
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
# What the server processes share (realtime.buses): "memory" (one process), "postgres" (the
# default database, on PostgreSQL) or "redis". Unset: "redis" with REDIS_URL, else "memory".
REALTIME_BUS = os.environ.get("REALTIME_BUS", "").strip().lower()

# The event bus between processes (realtime/bus.py; docs/deployment.md): "memory" (one
# server process; other processes publish through the database's event table),
# "postgres" (several server processes on one PostgreSQL database) or "redis".
REALTIME_BUS = os.environ.get("REALTIME_BUS", "").strip().lower() or ("redis" if REDIS_URL else "memory")
if REALTIME_BUS not in ("memory", "postgres", "redis"):
    raise ImproperlyConfigured(f"REALTIME_BUS={REALTIME_BUS!r}: choose memory, postgres or redis.")
if REALTIME_BUS == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("REALTIME_BUS=redis needs REDIS_URL (e.g. redis://127.0.0.1:6379/0).")
if REALTIME_BUS == "postgres" and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "REALTIME_BUS=postgres needs DATABASE_URL on PostgreSQL (postgres://...): the processes share "
        "events through its event table and LISTEN/NOTIFY, which SQLite cannot give them."
    )
# Events older than this are deleted from the event table (readers take them within a second).
REALTIME_BUS_RETENTION_SECONDS = float(os.environ.get("REALTIME_BUS_RETENTION_SECONDS", "300"))
# How often a server reads the event table when nothing woke it (SQLite has no wake-up to give).
REALTIME_BUS_POLL_SECONDS = float(os.environ.get("REALTIME_BUS_POLL_SECONDS", "0.2"))


# A socket whose oldest undelivered event waited longer than this (seconds) is closed with
# 1013 and resumes by replay, as one past the queue's capacity is (docs/contract.md);
# 0 turns the time bound off. The figures behind the default are in bench/README.md.
REALTIME_MAX_DELIVERY_LAG = float(os.environ.get("REALTIME_MAX_DELIVERY_LAG", "5"))


def redis_channel_layer(url: str) -> dict:
    """Return the CHANNEL_LAYERS entry for channels_redis on ``url``."""
    return {
        # channels_redis's RedisChannelLayer between processes, one membership per
        # process per group; the in-process layer for the sockets (realtime/relay.py).
        "BACKEND": "realtime.relay.RedisRelayChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, the same
            # as channels_redis's blocking BZPOPMIN: idle consumers would
            # crash every few seconds (django/channels_redis#422).
            "hosts": [{"address": url, "socket_timeout": 15, "socket_connect_timeout": 3}],
            "capacity": 1000,
            "expiry": 60,
            "max_lag": REALTIME_MAX_DELIVERY_LAG,
        },
    }


if REALTIME_BUS == "redis":
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
elif REALTIME_BUS == "postgres":
    CHANNEL_LAYERS = {
        "default": {
            # The in-process layer for this process's sockets; group_send writes a
            # row of the event table that every process reads (realtime/pgbus.py).
            "BACKEND": "realtime.pgbus.PostgresBusChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60, "max_lag": REALTIME_MAX_DELIVERY_LAG},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # Drop-in for channels.layers.InMemoryChannelLayer with O(1) work per
            # delivery and no silent loss (measured in bench/layer_microbench.py).
            "BACKEND": "realtime.layers.FastInMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 60, "max_lag": REALTIME_MAX_DELIVERY_LAG},
        }
    }
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Fail fast while Redis is down: presence and rate limits degrade
            # gracefully (realtime/presence.py, realtime/ratelimit.py).
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves from STATIC_ROOT (filled by collectstatic for `make serve`)
# and from the finders in DEBUG; it only needs the directory to exist.
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Realtime limits (the wire contract (docs/contract.md), section 3); each can be
# overridden from the environment.
REALTIME_MAX_FRAME = int(os.environ.get("REALTIME_MAX_FRAME", str(64 * 1024)))
REALTIME_RATE_LIMIT = os.environ.get("REALTIME_RATE_LIMIT", "20/10s")
REALTIME_MAX_CONNECTIONS_PER_USER = int(os.environ.get("REALTIME_MAX_CONNECTIONS_PER_USER", "20"))
# Seconds after which a crashed process's presence entries expire.
REALTIME_PRESENCE_TTL = int(os.environ.get("REALTIME_PRESENCE_TTL", "30"))
# Seconds between SSE keep-alive comments (proxies drop silent streams).
REALTIME_SSE_KEEPALIVE = float(os.environ.get("REALTIME_SSE_KEEPALIVE", "15"))
# How often a live connection re-checks its session or token (expiry, revocation).
REALTIME_REVALIDATE_SECONDS = float(os.environ.get("REALTIME_REVALIDATE_SECONDS", "300"))

# Deleting a session (logout, flush, a cycled key, clearsessions) closes its
# connections with 4401 (realtime/sessions.py).
SESSION_ENGINE = "realtime.sessions"
# Django's ModelBackend with a user lookup cheap enough for every handshake (realtime/backends.py).
AUTHENTICATION_BACKENDS = ["realtime.backends.ModelBackend"]

# No credential in a log line: the one handler redacts ?access_token= and
# Bearer values, and no request forges one: it escapes the control characters
# of what a record carries (realtime/logfilters.py). Django's default "django"
# handlers would print each of its records a second time, unredacted (under
# DEBUG), or mail the request's query string (with ADMINS): its records
# propagate here instead. uvicorn's own loggers get the filters from
# project/uvicorn_logging.json.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_credentials": {"()": "realtime.logfilters.RedactCredentials"},
        "escape_controls": {"()": "realtime.logfilters.EscapeControlCharacters"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_credentials", "escape_controls"],
        }
    },
    "loggers": {"django": {"handlers": [], "level": "INFO"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}

CSRF_FAILURE_VIEW = "realtime.views.csrf_failure"

# Uploaded files: MEDIA_ROOT holds them with the default FileSystemStorage. Never serve it
# directly: an app serves a file only to those who may read it (docs/uploads.md).
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", BASE_DIR / "media"))

# Each app reads its own settings under its own prefix (<APP>_NAME, realtime.app_setting), with
# its defaults in the app (<app>/conf.py): set one here or in the environment to change it.

# Bounded growth (docs/security.md): unrevoked API tokens per user, and the
# largest body a request without a session cookie or an Authorization header
# may send (refused with 413 before it is read).
REALTIME_MAX_TOKENS_PER_USER = int(os.environ.get("REALTIME_MAX_TOKENS_PER_USER", "20"))
REALTIME_MAX_ANONYMOUS_BODY = int(os.environ.get("REALTIME_MAX_ANONYMOUS_BODY", str(64 * 1024)))
# Seconds a connection has to send its request's headers under `make serve`
# (uvicorn has no such timeout of its own: realtime/serverguard.py).
REALTIME_HEADER_TIMEOUT = float(os.environ.get("REALTIME_HEADER_TIMEOUT", "10"))

# Metrics and logs (docs/operations.md). REALTIME_METRICS=0 records nothing and
# GET /metrics answers 404 (the bench's metrics-off server). GET /metrics answers only these
# addresses (a comma list of IPs and CIDRs; loopback by default); everyone
# else gets a 404. One endpoint per server process: scrape each one.
REALTIME_METRICS = env_bool("REALTIME_METRICS", True)
REALTIME_METRICS_ALLOWED_IPS = os.environ.get("REALTIME_METRICS_ALLOWED_IPS", "127.0.0.1,::1")
# DJANGO_LOG_JSON=1: one JSON object per log line on the console (realtime.logfilters.JsonFormatter),
# still redacted. Each connection's end is one INFO line of the logger realtime.connections.
if os.environ.get("DJANGO_LOG_JSON", "").strip().lower() in ("1", "true", "yes", "on"):
    LOGGING["formatters"]["json"] = {"()": "realtime.logfilters.JsonFormatter"}
    LOGGING["handlers"]["console"]["formatter"] = "json"
