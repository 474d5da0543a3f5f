"""Kept for the dotted path earlier docs gave host sites: the URLs now live in :mod:`responses_app.routing`."""

from responses_app.routing import websocket_urlpatterns

__all__ = ["websocket_urlpatterns"]
