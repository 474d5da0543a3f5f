"""ASGI entry point: HTTP (JSON and SSE) through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openresponses_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from responses_app.routing import websocket_urlpatterns  # noqa: E402

if os.environ.get("OPENRESPONSES_SERVE_STATIC", "1") != "0":
    # The admin's CSS and JS, straight from the apps' static folders (no collectstatic needed);
    # set OPENRESPONSES_SERVE_STATIC=0 when a front server serves STATIC_ROOT instead.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from responses_app.api.asgi import api_asgi_app  # noqa: E402

application = ProtocolTypeRouter(
    {
        # /v1/ requests take the lean handler (no per-request thread); the admin the full one.
        "http": api_asgi_app(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
