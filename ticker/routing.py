from django.urls import path

from realtime import TopicConsumer

from .topic import TickerTopic

websocket_urlpatterns = [path("ws/ticker/", TopicConsumer.as_asgi(topic=TickerTopic))]
