"""WebSocket routes of the Responses API; a host site adds them to its ``ProtocolTypeRouter``.

application = ProtocolTypeRouter({
    "http": get_asgi_application(),
    "websocket": URLRouter(responses_app.routing.websocket_urlpatterns),
})
"""

from django.urls import path

from responses_app.api.websocket import ResponsesConsumer

websocket_urlpatterns = [
    path("v1/responses", ResponsesConsumer.as_asgi(), name="responses-websocket"),
]
