"""A migration operation for apps that take over models another app created."""

from __future__ import annotations

from django.db import migrations


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
