"""The chat's settings, under CHAT_: the setting, else the environment variable, else the default here.

The project's settings.py sets none of them, so removing the chat leaves it untouched.
"""

from __future__ import annotations

from realtime import app_setting


def max_text() -> int:
    """Return the longest message text, in characters (CHAT_MAX_TEXT; REALTIME_MAX_TEXT, its earlier name)."""
    return app_setting("CHAT_MAX_TEXT", 2000, env=("REALTIME_MAX_TEXT",))


def typing_rate() -> str:
    """Return how many typing events one user's are passed on per room, e.g. ``5/1s`` (CHAT_TYPING_RATE)."""
    return app_setting("CHAT_TYPING_RATE", "5/1s", env=("REALTIME_TYPING_RATE",))


def rooms_per_user_per_hour() -> int:
    """Return how many rooms one user may create per hour (CHAT_ROOMS_PER_USER_PER_HOUR)."""
    return app_setting("CHAT_ROOMS_PER_USER_PER_HOUR", 20, env=("REALTIME_ROOMS_PER_USER_PER_HOUR",))
