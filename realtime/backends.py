"""Django's ModelBackend, with a user lookup cheap enough to run on every WebSocket handshake.

Loading the session and the user was a large share of a handshake's CPU,
most of it building ORM queries, not running them (measured:
bench/README.md, What changed, and what each change bought).
``ModelBackend.get_user`` builds ``_default_manager.get(pk=...)`` each time;
the same row through a prepared raw query costs a fraction of that, with
the same model instance (Django's converters and ``from_db``) and the same
``user_can_authenticate`` rule. A user manager whose queryset filters rows
(``get_queryset().query.where``) keeps Django's lookup, which honours it.
"""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.core.exceptions import ValidationError
from django.db import connections, router


class ModelBackend(DjangoModelBackend):
    """``django.contrib.auth.backends.ModelBackend`` with a faster :meth:`get_user`."""

    def get_user(self, user_id):
        """Return the active user with primary key ``user_id``, or None (one prepared query)."""
        user_model = get_user_model()
        alias = router.db_for_read(user_model)
        sql = _prepared_user_sql(user_model, alias)
        if sql is None:
            return super().get_user(user_id)
        try:
            pk = user_model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = next(iter(user_model._default_manager.raw(sql, [pk]).using(alias)), None)
        return user if user is not None and self.user_can_authenticate(user) else None


@functools.cache
def _prepared_user_sql(user_model: type, alias: str) -> str | None:
    """Return :func:`_user_sql` for the model's default manager, built once per model and database."""
    return _user_sql(user_model, user_model._default_manager, alias)


def _user_sql(user_model: type, manager, alias: str) -> str | None:
    """Return the SELECT of one user by primary key, or None if the manager filters rows."""
    if manager.get_queryset().query.where:
        return None
    quote = connections[alias].ops.quote_name
    meta = user_model._meta
    return f"SELECT * FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"
