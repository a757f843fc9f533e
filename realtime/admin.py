"""Admin for rooms, messages and API tokens; changes reach the rooms live."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render

from . import events
from .models import ApiToken, Message, Room, Upload


class AnnouncementForm(forms.Form):
    """The text of an announcement to send to the selected rooms."""

    text = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created"]
    search_fields = ["slug", "name"]
    actions = ["send_announcement"]

    @admin.action(description="Send announcement")
    def send_announcement(self, request, queryset):
        """Ask for a text, then publish it to every selected room."""
        form = AnnouncementForm(request.POST if "text" in request.POST else None)
        if form.is_valid():
            for room in queryset:
                events.publish_sync(room.slug, events.announcement(form.cleaned_data["text"]))
            self.message_user(request, f"Announcement sent to {queryset.count()} room(s).", messages.SUCCESS)
            return None
        return render(
            request,
            "admin/realtime/announce.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "rooms": queryset,
                "opts": self.model._meta,
            },
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "user", "short_text", "created"]
    list_filter = ["room", "created"]
    search_fields = ["text", "user__username", "room__slug"]
    list_select_related = ["room", "user"]
    raw_id_fields = ["user"]
    date_hierarchy = "created"

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created", "last_used", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["user__username", "name", "prefix"]
    readonly_fields = ["prefix", "created", "last_used"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # A raw token is shown only once, when issued: use POST /api/tokens
        # or manage.py create_token.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        """Mark the selected tokens revoked; they stop authenticating at once."""
        count = 0
        for token in queryset.filter(revoked=False):
            token.revoked = True
            token.save(update_fields=["revoked"])
            count += 1
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)


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
