"""URLs: the demo pages, the JSON API (CONTRACT.md section 2), accounts and admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path, register_converter

from realtime import sse, views
from realtime.models import SLUG_PATTERN
from realtime.uploads import views as uploads


class RoomSlugConverter:
    """A room slug: ``[a-z0-9-]{1,50}``."""

    regex = SLUG_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RoomSlugConverter, "room")

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("rooms/<room:slug>/", views.room, name="room"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("api/me", views.me, name="api-me"),
    path("api/tokens", views.tokens, name="api-tokens"),
    path("api/rooms", views.rooms, name="api-rooms"),
    path("api/rooms/<room:slug>/messages", views.room_messages, name="api-room-messages"),
    path("api/rooms/<room:slug>/presence", views.room_presence, name="api-room-presence"),
    # Resumable uploads (tus 1.0, CONTRACT.md section 5); the id is checked by the view,
    # so even a malformed one is answered the tus way (Tus-Resumable header).
    re_path(r"^api/uploads/?$", uploads.uploads, name="api-uploads"),
    path("api/uploads/<str:upload_id>", uploads.upload, name="api-upload"),
    path("api/uploads/<str:upload_id>/file", uploads.upload_file, name="api-upload-file"),
    path("sse/rooms/<room:slug>/", sse.room_stream, name="sse-room"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Last: any other /api/ URL is a JSON 404, DEBUG or not (DEBUG skips handler404).
    re_path(r"^api/", views.not_found),
]

handler404 = "realtime.views.not_found"
handler500 = "realtime.views.server_error"
