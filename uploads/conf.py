"""The uploads' settings, under UPLOADS_: the setting, else the environment variable, else the default here.

The project's settings.py sets none of them, so removing the uploads leaves it
untouched. Each also reads its earlier environment name, REALTIME_UPLOAD_<NAME>.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from realtime import app_setting


def _setting(name: str, default):
    return app_setting(f"UPLOADS_{name}", default, env=(f"REALTIME_UPLOAD_{name}",))


def storage() -> str:
    """Return the STORAGES alias finished uploads are saved to (UPLOADS_STORAGE)."""
    return _setting("STORAGE", "default")


def temp_dir() -> Path:
    """Return where unfinished uploads grow, shared by every server process (UPLOADS_TEMP_DIR)."""
    return Path(_setting("TEMP_DIR", lambda: Path(settings.MEDIA_ROOT) / "partial"))


def max_size() -> int:
    """Return the largest upload, in bytes (UPLOADS_MAX_SIZE)."""
    return _setting("MAX_SIZE", 500 * 1024 * 1024)


def max_active_per_user() -> int:
    """Return how many unfinished uploads one user may hold; one more is refused with 429."""
    return _setting("MAX_ACTIVE_PER_USER", 5)


def expire_hours() -> float:
    """Return after how many idle hours an unfinished upload is abandoned (UPLOADS_EXPIRE_HOURS)."""
    return _setting("EXPIRE_HOURS", 24.0)


def topic() -> str:
    """Return the topic kind an upload's ``room`` metadata names (UPLOADS_TOPIC): who may upload there."""
    return _setting("TOPIC", "room")


def progress_interval() -> float:
    """Return the seconds between two upload_progress events of one upload (UPLOADS_PROGRESS_INTERVAL)."""
    return _setting("PROGRESS_INTERVAL", 0.25)
