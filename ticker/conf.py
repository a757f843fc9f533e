"""The ticker's settings, under TICKER_: the setting, else the environment variable, else the default here."""

from __future__ import annotations

from realtime import app_setting


def interval() -> float:
    """Return the seconds between two price snapshots (TICKER_INTERVAL)."""
    return app_setting("TICKER_INTERVAL", 1.0)
