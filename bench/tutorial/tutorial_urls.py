"""HTTP routes of the tutorial baseline: only the health check the runner polls."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("healthz", lambda request: HttpResponse("ok\n"))]
