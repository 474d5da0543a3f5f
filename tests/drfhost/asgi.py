"""The DRF host's ASGI application: plain Django."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.drfhost.settings")
application = get_asgi_application()
