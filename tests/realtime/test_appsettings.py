"""An app's own settings (realtime.app_setting): the setting, else the environment, else the default."""

from __future__ import annotations

from pathlib import Path

from realtime import app_setting


def test_the_setting_wins_then_the_environment_then_the_default(settings, monkeypatch):
    assert app_setting("DEMO_LIMIT", 7) == 7
    monkeypatch.setenv("DEMO_OLD_LIMIT", "8")
    assert app_setting("DEMO_LIMIT", 7, env=("DEMO_OLD_LIMIT",)) == 8
    monkeypatch.setenv("DEMO_LIMIT", " 9 ")
    assert app_setting("DEMO_LIMIT", 7, env=("DEMO_OLD_LIMIT",)) == 9
    settings.DEMO_LIMIT = 10
    assert app_setting("DEMO_LIMIT", 7) == 10


def test_an_environment_value_takes_the_default_s_type(monkeypatch):
    monkeypatch.setenv("DEMO_RATE", "0.5")
    monkeypatch.setenv("DEMO_DIR", "/tmp/demo")
    assert app_setting("DEMO_RATE", 1.0) == 0.5
    assert app_setting("DEMO_DIR", Path("/elsewhere")) == Path("/tmp/demo")
    assert app_setting("DEMO_DIR", lambda: Path("/elsewhere")) == Path("/tmp/demo")
    monkeypatch.delenv("DEMO_DIR")
    assert app_setting("DEMO_DIR", lambda: Path("/elsewhere")) == Path("/elsewhere")
