"""Client authentication: ``Authorization: Bearer <key>`` checked by a pluggable hook.

The default hook accepts keys from ``OPENRESPONSES["API_KEYS"]`` / ``OPENRESPONSES_API_KEYS``
(and hashed keys stored in the database, :mod:`responses_app.gateway.keys`). With no key configured at
all, every request is accepted (local development) and a warning is logged once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
from typing import Any

from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError
from responses_app.gateway.identity import ClientIdentity
from responses_app.gateway.keys import identity_for_key, stored_keys_exist

__all__ = [
    "ClientIdentity",
    "authenticate",
    "authenticate_default",
    "authenticate_drf",
    "check_model_allowed",
]

logger = logging.getLogger(__name__)
_warned_open = False


def check_model_allowed(identity: ClientIdentity, model: str) -> None:
    """403 when the caller's key is limited to model patterns that ``model`` does not match."""
    if identity.allowed_models and not any(fnmatch.fnmatchcase(model, p) for p in identity.allowed_models):
        raise ApiError(
            403,
            f"This API key may not use the model '{model}'.",
            param="model",
            code="model_not_allowed",
            error_type="permission_error",
        )


def bearer_token(headers: Any) -> str | None:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    if not value.lower().startswith("bearer "):
        return None
    return value[7:].strip() or None


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def configured_keys() -> list[str]:
    raw = openresponses_settings.API_KEYS or ""
    if isinstance(raw, list | tuple):
        return [k for k in raw if k]
    return [k.strip() for k in str(raw).split(",") if k.strip()]


def authenticate_default(request: Any) -> ClientIdentity:
    """The default hook: static keys from settings/env, then stored client keys.

    A config file that is set but unusable keeps its last good keys (see ``keys.config_file_data``);
    when no good version was ever read, requests are refused with 503, never let in without a key.
    """
    from responses_app.gateway.keys import ConfigUnavailable

    try:
        return _authenticate_default(request)
    except ConfigUnavailable as exc:
        raise ApiError(
            503,
            "The server's configuration file cannot be read: requests are refused until an operator fixes it.",
            code="config_unavailable",
            error_type="server_error",
        ) from exc


def _authenticate_default(request: Any) -> ClientIdentity:
    global _warned_open
    keys = configured_keys()
    token = bearer_token(request.headers)
    if token:
        for key in keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                return ClientIdentity(owner=f"key:{key_fingerprint(key)}", name="static key")
        identity = identity_for_key(token)
        if identity is not None:
            return identity
    open_mode = not keys and not stored_keys_exist()
    if open_mode:
        if not _warned_open:
            logger.warning(
                "No client API key is configured: every request is accepted (set OPENRESPONSES_API_KEYS)."
            )
            _warned_open = True
        return ClientIdentity(owner=None, name="anonymous")
    if not token:
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            error_type="authentication_error",
        )
    raise ApiError(401, "Invalid API key.", code="invalid_api_key", error_type="authentication_error")


def authenticate_drf(request: Any, *, fallback: Any) -> ClientIdentity:
    """The host site's DRF authentication classes (``OPENRESPONSES["DRF_AUTHENTICATION_CLASSES"]``).

    A user they authenticate is the owner ``user:<pk>``. Anyone else goes on to ``fallback`` (the
    ``AUTHENTICATE`` hook: client keys), which must name an owner: a site that configured
    authentication never runs open to anonymous callers.
    """
    from django.http import HttpRequest
    from django.utils.module_loading import import_string
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request

    django_request = request
    if not isinstance(request, HttpRequest):  # a WebSocket handshake: the same headers
        django_request = HttpRequest()
        django_request.META, django_request.GET = dict(request.META), request.GET
        django_request.path, django_request.method = request.path, "GET"
    authenticators = [
        (import_string(c) if isinstance(c, str) else c)()
        for c in openresponses_settings.DRF_AUTHENTICATION_CLASSES
    ]
    failed: APIException | None = None
    try:
        user = Request(django_request, authenticators=authenticators).user
    except APIException as exc:
        user, failed = None, exc
    if user is not None and user.is_authenticated:
        return ClientIdentity(owner=f"user:{user.pk}", name=user.get_username(), extra={"user_id": user.pk})
    try:
        identity = fallback(request)
    except ApiError:
        if failed is None:
            raise
        identity = None
    if identity is not None and identity.owner is not None:
        return identity
    raise ApiError(
        401,
        str(failed.detail) if failed else "Authentication credentials were not provided.",
        code="invalid_api_key" if failed else "missing_api_key",
        error_type="authentication_error",
    )


def authenticate(request: Any) -> ClientIdentity:
    """Run the configured hook (``OPENRESPONSES["AUTHENTICATE"]``)."""
    hook = openresponses_settings.AUTHENTICATE
    if openresponses_settings.DRF_AUTHENTICATION_CLASSES:
        return authenticate_drf(request, fallback=hook)
    identity = hook(request)
    if identity is None:
        raise ApiError(
            401, "Authentication failed.", code="invalid_api_key", error_type="authentication_error"
        )
    return identity
