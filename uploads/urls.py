"""Resumable uploads (tus 1.0, the wire contract section 5) and finished attachments."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    # The id is checked by the view, so even a malformed one is answered the tus way
    # (Tus-Resumable header).
    re_path(r"^api/uploads/?$", views.uploads, name="api-uploads"),
    path("api/uploads/<str:upload_id>", views.upload, name="api-upload"),
    path("api/uploads/<str:upload_id>/file", views.upload_file, name="api-upload-file"),
]
