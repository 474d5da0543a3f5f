"""Django settings for the benchmark's servers: the site's settings plus a private Celery queue.

The shared Redis may serve other workers at the same time, so the benchmark's tasks go to a queue
and channel prefix of their own (``OPENRESPONSES_BENCH_TAG``), never to the default ``celery`` queue.
"""

import os

from openresponses_site.settings import *  # noqa: F403
from openresponses_site.settings import CHANNEL_LAYERS, REDIS_URL

_tag = os.environ.get("OPENRESPONSES_BENCH_TAG", "bench")
CELERY_TASK_DEFAULT_QUEUE = f"or-{_tag}"
if REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"or-{_tag}"
