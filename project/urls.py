"""URLs: each app's pages and API (one include() per app), the core's, accounts and the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from realtime import views as core

urlpatterns = [
    path("", include("chat.urls")),
    path("", include("uploads.urls")),
    path("", include("ticker.urls")),
    path("", include("realtime.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    # Last: any other /api/ URL is a JSON 404, DEBUG or not (DEBUG skips handler404).
    re_path(r"^api/", core.not_found),
]

handler404 = "realtime.views.not_found"
handler500 = "realtime.views.server_error"
