"""Django's ModelBackend, with a user lookup cheap enough to run on every WebSocket handshake.

Loading the session and the user was a large share of a handshake's CPU,
most of it building ORM queries, not running them (measured:
bench/README.md, What changed, and what each change bought).
``ModelBackend.get_user`` builds ``_default_manager.get(pk=...)`` each time;
the same row through a prepared query on a cursor costs a fraction of that,
with the same model instance (the backend's and the fields' converters,
``from_db``) and the same ``user_can_authenticate`` rule. Not through
``Manager.raw()``: its queryset, query and compiler, built per call, cost
more than the query (bench/README.md). A user manager whose queryset
filters rows (``get_queryset().query.where``) keeps Django's lookup, which
honours it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

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
        lookup = _prepared_lookup(user_model, alias)
        if lookup is None:
            return super().get_user(user_id)
        try:
            pk = user_model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = lookup.fetch(user_model, alias, pk)
        return user if user is not None and self.user_can_authenticate(user) else None


class _Lookup(NamedTuple):
    """The SELECT of one user by primary key, and what turns its row into the model."""

    sql: str
    attnames: tuple[str, ...]
    cols: tuple[Any, ...]  # each column's expression, for its converters

    def fetch(self, user_model: type, alias: str, pk: Any) -> Any:
        """Return the user with this primary key as ``from_db`` builds it, or None."""
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        # Asked per call, as the ORM's compiler does: the converters are bound to this
        # thread's connection.
        ops = connection.ops
        for index, col in enumerate(self.cols):
            converters = ops.get_db_converters(col) + col.get_db_converters(connection)
            if converters:
                value = values[index]
                for convert in converters:
                    value = convert(value, col, connection)
                values[index] = value
        return user_model.from_db(alias, self.attnames, values)


@functools.cache
def _prepared_lookup(user_model: type, alias: str) -> _Lookup | None:
    """Return :func:`_user_lookup` for the model's default manager, built once per model and database."""
    return _user_lookup(user_model, user_model._default_manager, alias)


def _user_lookup(user_model: type, manager, alias: str) -> _Lookup | None:
    """Return the lookup of one user by primary key, or None if the manager filters rows."""
    if manager.get_queryset().query.where:
        return None
    meta = user_model._meta
    fields = meta.concrete_fields
    if getattr(meta.pk, "column", None) is None or any(field.column is None for field in fields):
        return None  # a composite key: Django's lookup
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    return _Lookup(
        sql=f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s",
        attnames=tuple(field.attname for field in fields),
        cols=tuple(field.get_col(meta.db_table) for field in fields),
    )
