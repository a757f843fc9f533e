"""Resumable uploads (tus 1.0, the wire contract section 5), attachments, and the admin's earlier URL."""

from django.contrib import admin
from django.urls import include, path, re_path

from . import views
from .models import Upload

urlpatterns = [
    # The id is checked by the view, so even a malformed one is answered the tus way
    # (Tus-Resumable header).
    re_path(r"^api/uploads/?$", views.uploads, name="api-uploads"),
    path("api/uploads/<str:upload_id>", views.upload, name="api-upload"),
    path("api/uploads/<str:upload_id>/file", views.upload_file, name="api-upload-file"),
    # Uploads were the core's model: the wire contract keeps its admin pages at the
    # earlier URL (/admin/realtime/upload/) as well.
    path("admin/realtime/upload/", include(admin.site.get_model_admin(Upload).urls)),
]
