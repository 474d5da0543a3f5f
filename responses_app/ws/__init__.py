"""WebSocket mode of the Responses API (Django Channels): see :mod:`responses_app.ws.routing`."""
