"""Admin for uploads: deleting one here removes its bytes too (uploads.models)."""

from __future__ import annotations

from django.contrib import admin

from .models import Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["filename", "user", "room", "size", "offset", "created", "completed"]
    list_filter = ["completed", "created"]
    search_fields = ["filename", "user__username", "room"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = [
        "id",
        "user",
        "room",
        "filename",
        "size",
        "offset",
        "stored_name",
        "created",
        "completed",
    ]

    def has_add_permission(self, request) -> bool:
        # Uploads are made through /api/uploads/; deleting one here removes its bytes.
        return False
