"""Admin for API tokens: revoking one ends its live connections (realtime.signals)."""

from __future__ import annotations

from django.contrib import admin, messages

from .models import ApiToken


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
