"""The host's ASGI application: plain Django; the JSON and SSE endpoints need nothing more."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hostsite.settings")
application = get_asgi_application()
