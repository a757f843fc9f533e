"""The echo topic's SSE route in front of the project's URLs (ROOT_URLCONF for core tests)."""

from project.urls import urlpatterns as project_urlpatterns
from tests.realtime.echo import urlpatterns as echo_urlpatterns

urlpatterns = [*echo_urlpatterns, *project_urlpatterns]
