"""The uploads' settings are UPLOADS_*; the earlier names, REALTIME_UPLOAD_*, still work as variables."""

from __future__ import annotations

from pathlib import Path

from uploads import conf


def test_each_setting_reads_its_earlier_environment_name(settings, monkeypatch, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    assert conf.temp_dir() == tmp_path / "partial"
    monkeypatch.setenv("REALTIME_UPLOAD_MAX_SIZE", "123")
    monkeypatch.setenv("REALTIME_UPLOAD_TEMP_DIR", str(tmp_path / "old"))
    assert (conf.max_size(), conf.temp_dir()) == (123, tmp_path / "old")
    monkeypatch.setenv("UPLOADS_MAX_SIZE", "456")
    assert conf.max_size() == 456
    settings.UPLOADS_TEMP_DIR = "/srv/partial"
    assert conf.temp_dir() == Path("/srv/partial")


def test_the_uploads_defaults():
    assert (conf.storage(), conf.max_size(), conf.max_active_per_user()) == ("default", 500 * 1024 * 1024, 5)
    assert (conf.expire_hours(), conf.topic(), conf.progress_interval()) == (24.0, "room", 0.25)
