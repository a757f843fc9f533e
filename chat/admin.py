"""Admin for rooms and messages; changes reach the rooms live."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render

from realtime import publish_sync

from . import conf, events
from .models import Message, Room
from .topic import RoomTopic


class AnnouncementForm(forms.Form):
    """The text of an announcement to send to the selected rooms."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Built per form, not at import: CHAT_MAX_TEXT is a setting, as for messages.
        self.fields["text"] = forms.CharField(
            max_length=conf.max_text(), widget=forms.Textarea(attrs={"rows": 3})
        )


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
                publish_sync(RoomTopic(room.slug), events.announcement(form.cleaned_data["text"]))
            self.message_user(request, f"Announcement sent to {queryset.count()} room(s).", messages.SUCCESS)
            return None
        return render(
            request,
            "admin/chat/announce.html",
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
