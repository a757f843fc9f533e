from django.urls import path

from realtime import stream_view

from . import views
from .topic import TickerTopic

urlpatterns = [
    path("ticker/", views.dashboard, name="ticker"),
    path("api/ticker", views.snapshot, name="api-ticker"),
    path("sse/ticker/", stream_view(TickerTopic), name="sse-ticker"),
]
