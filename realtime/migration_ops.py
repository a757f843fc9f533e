"""Migration operations for an app that takes over tables another app's migrations created.

A table made by an earlier layout (the core's migrations, say) keeps its
name and rows when an app adopts its model: the app's first migration
declares the model with ``db_table`` set to that table, as
:class:`AdoptOrCreateModel`, and depends on the migration that created the
table on old databases. On a new database, where the table was never
made, the same migration creates it.
"""

from __future__ import annotations

from django.db import migrations


def table_exists(schema_editor, table: str) -> bool:
    """Return whether ``table`` exists in the database ``schema_editor`` works on."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return table in connection.introspection.table_names(cursor)


class AdoptOrCreateModel(migrations.CreateModel):
    """CreateModel that adopts the model's table when it exists already, rows and all.

    Its state is CreateModel's; on the database it creates the table only
    when absent. Reversed, it drops the table, as CreateModel does: the app
    unmigrated has no tables.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.name)
        if table_exists(schema_editor, model._meta.db_table):
            return
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Create model {self.name}, or adopt its existing table"


def move_content_types(from_label: str, to_label: str, models: list[str]) -> migrations.RunPython:
    """Return a RunPython that relabels ``models``' content types (permissions, admin history follow)."""

    def forward(apps, schema_editor, old=from_label, new=to_label) -> None:
        content_types = apps.get_model("contenttypes", "ContentType")
        for model in models:
            if not content_types.objects.filter(app_label=new, model=model).exists():
                content_types.objects.filter(app_label=old, model=model).update(app_label=new)

    def backward(apps, schema_editor) -> None:
        forward(apps, schema_editor, old=to_label, new=from_label)

    return migrations.RunPython(forward, backward)
