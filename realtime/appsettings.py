"""An app's own settings, so the project's settings.py needs no line for an app to work or be removed.

An app reads each of its settings under its own prefix (``SHOP_MAX_ITEMS``)
with :func:`app_setting`: the Django setting when the project sets one,
else the environment variable of the same name (or an earlier name), else
the app's default.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings


def app_setting(name: str, default: Any, *, env: tuple[str, ...] = ()) -> Any:
    """Return ``settings.<name>``, else the environment's ``name`` (then each of ``env``), else ``default``.

    A value from the environment is converted to the default's type (int,
    float, str, Path); ``default`` may be a callable, called only when needed.
    Read per call, so ``override_settings`` and the environment apply at once.
    """
    value = getattr(settings, name, _UNSET)
    if value is not _UNSET:
        return value
    fallback = default() if callable(default) else default
    for variable in (name, *env):
        raw = os.environ.get(variable)
        if raw is not None:
            return type(fallback)(raw.strip()) if fallback is not None else raw
    return fallback


_UNSET = object()
