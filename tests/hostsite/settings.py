"""Settings of the host site: a plain Django project that adds OpenResponses to INSTALLED_APPS.

Nothing here comes from ``openresponses_site``: the host has its own URLs (the API under ``llm/``),
its own authentication hook (its API tokens), and its own adapter, hosted tool and loop middleware.
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = "hostsite-test-secret-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # OpenResponses
    "channels",
    "providers_app",
    "responses_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.hostsite.urls"
ASGI_APPLICATION = "tests.hostsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("HOSTSITE_DB", str(HERE / "hostsite.sqlite3")),
        "OPTIONS": {"timeout": 30},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"

# The host's own API tokens (a real site would keep them in its database).
HOST_API_TOKENS = {"host-token-alice": "alice", "host-token-bob": "bob"}

OPENRESPONSES = {
    "AUTHENTICATE": "tests.hostsite.auth.authenticate",
    "CONFIG_FILE": str(HERE / "openresponses.json"),
    "HOSTED_TOOLS": ["tests.hostsite.tools.order_status"],
    "MIDDLEWARE": ["tests.hostsite.middleware.NoSecretsMiddleware"],
}
