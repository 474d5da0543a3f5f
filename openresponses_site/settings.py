"""Settings for the OpenResponses site: wiring only, everything tunable from the environment.

With nothing configured this is the embedded default: SQLite, an in-memory channel layer and
loops run in-process. ``DATABASE_URL`` switches the store (e.g. to PostgreSQL) and ``REDIS_URL``
switches to the production topology (Celery workers, Redis channel layer).
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """A Django DATABASES entry from a ``postgres://`` or ``sqlite:///`` URL."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # A connection pool per process: async views run each request on its own thread, so
            # persistent per-thread connections would pile up; the pool bounds and reuses them.
            "CONN_MAX_AGE": 0,
            # The pool checks a connection before handing it out (one round trip): after PostgreSQL
            # restarts, its dead connections are replaced instead of failing requests.
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "pool": {
                    "min_size": 1,
                    "max_size": int(os.environ.get("OPENRESPONSES_DB_POOL_SIZE", "20")),
                    "timeout": 30,
                },
                **options,
            },
        }
    if parsed.scheme == "sqlite":
        name = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ":memory:"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name or ":memory:",
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parsed.scheme!r}")


DEBUG = env_bool("DJANGO_DEBUG", False)
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
# Production mode: DEBUG off with a real database or Redis. It refuses to start on a known secret.
PRODUCTION_MODE = not DEBUG and bool(DATABASE_URL or REDIS_URL)
INSECURE_SECRET_KEY = "openresponses-insecure-development-key-change-me"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", INSECURE_SECRET_KEY)
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")
if PRODUCTION_MODE and (
    not SECRET_KEY or SECRET_KEY.startswith(("openresponses-insecure-", "django-insecure-"))
):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is unset or a development key while DEBUG is off and DATABASE_URL or "
        "REDIS_URL is set: set it to a long random string (see docs/configuration.md)."
    )
ALLOWED_HOSTS = [
    h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# HTTPS (``manage.py check --deploy``): DJANGO_SECURE_HTTPS=true behind TLS turns on secure
# cookies, the redirect to https and HSTS; DJANGO_SECURE_PROXY_SSL_HEADER=true trusts the proxy's
# X-Forwarded-Proto (only when the proxy sets it on every request).
SECURE_HTTPS = env_bool("DJANGO_SECURE_HTTPS", False)
SECURE_SSL_REDIRECT = SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "31536000" if SECURE_HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", SECURE_HTTPS)
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "providers_app",
    "responses_app",
    "axes",  # admin login throttling
]

MIDDLEWARE = [
    # API requests go straight to their (async) views; the admin takes the full stack below.
    "responses_app.api.middleware.ApiFastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: refuses logins of a locked-out username (429).
    "axes.middleware.AxesMiddleware",
]

# Admin login throttling (django-axes): after OPENRESPONSES_ADMIN_LOGIN_FAILURES wrong passwords
# a username is locked out, from that address, for OPENRESPONSES_ADMIN_LOCKOUT_MINUTES
# ("username+ip_address"; "username,ip_address" locks each separately; see docs/security.md).
AUTHENTICATION_BACKENDS = [
    "responses_app.admin.login_throttle.LoginThrottleBackend",  # django-axes
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("OPENRESPONSES_ADMIN_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("OPENRESPONSES_ADMIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [
    [part.strip() for part in item.split("+")]
    for item in os.environ.get("OPENRESPONSES_ADMIN_LOCKOUT_PARAMETERS", "username+ip_address").split(",")
    if item.strip()
]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "openresponses_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
ASGI_APPLICATION = "openresponses_site.asgi.application"
WSGI_APPLICATION = None

if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("OPENRESPONSES_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # IMMEDIATE: a transaction that reads then writes waits for the lock instead of failing with
            # "database is locked" when another thread wrote meanwhile (loops and requests write concurrently).
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # A prefix of its own lets several deployments (or test runs) share one Redis.
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("OPENRESPONSES_CHANNEL_PREFIX", "asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: the broker is Redis in the production topology; unused in the embedded default.
CELERY_BROKER_URL = REDIS_URL or "memory://"
if REDIS_URL.startswith("redis://"):
    # kombu's Redis transport, fixed to reconnect after a lost broker (see openresponses_site.broker).
    CELERY_BROKER_TRANSPORT = "openresponses_site.broker:Transport"
    # A worker cut off from Redis without the connection closing (a partition) drops the dead
    # connection within ~10 s and reconnects, instead of waiting on it for a minute or more; a
    # connect to an unreachable Redis (a web process's publish while cut off) gives up after 5 s.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "health_check_interval": 5,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("OPENRESPONSES_CELERY_QUEUE", "openresponses")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "openresponses-reap-orphans": {"task": "responses_app.tasks.reap_orphans", "schedule": 10.0},
    # Retention (expired responses, store:false leftovers) and stale concurrency slots.
    "openresponses-purge": {
        "task": "responses_app.tasks.purge_expired",
        "schedule": float(os.environ.get("OPENRESPONSES_PURGE_EVERY_SECONDS", "3600")),
    },
}


OPENRESPONSES = {
    # "inline" runs loops in the serving process; "celery" hands them to workers.
    "DISPATCH": os.environ.get("OPENRESPONSES_DISPATCH", "celery" if REDIS_URL else "inline"),
    "CONFIG_FILE": os.environ.get("OPENRESPONSES_CONFIG", ""),
    "HOSTED_TOOLS": env_list("OPENRESPONSES_HOSTED_TOOLS"),
    "MIDDLEWARE": env_list("OPENRESPONSES_MIDDLEWARE"),
    "KEEPALIVE_SECONDS": float(os.environ.get("OPENRESPONSES_KEEPALIVE_SECONDS", "15")),
}

# The management API (/manage/v1/): staff sessions (browsable API) and staff tokens
# (``manage.py drf_create_token <user>``). Its permissions and OpenAPI schema are set on its views.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OpenResponses management API",
    "DESCRIPTION": "Providers, routing rules, client keys, usage and stored responses.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("OPENRESPONSES_MAX_BODY_BYTES", str(50 * 1024 * 1024)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # OPENRESPONSES_LOG_FORMAT=json: one JSON object per line; every line carries the request id.
    "filters": {"request_id": {"()": "responses_app.observability.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {
            "()": "responses_app.observability.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "responses_app.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json"
            if os.environ.get("OPENRESPONSES_LOG_FORMAT", "").lower() == "json"
            else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("OPENRESPONSES_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes.apps": {"level": "WARNING"},
    },
}
