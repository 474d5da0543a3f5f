"""The Celery application: configured from Django settings (CELERY_*), tasks found in the apps."""

import os

from celery import Celery
from celery.signals import setup_logging

from openresponses_site.database_gate import DatabaseGate

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openresponses_site.settings")

app = Celery("openresponses")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A worker that cannot reach PostgreSQL takes no tasks until it can (see database_gate).
app.steps["consumer"].add(DatabaseGate)


@setup_logging.connect
def _keep_django_logging(**_: object) -> None:
    """Workers log through Django's LOGGING (request ids, the JSON option), not Celery's own setup."""
