"""The host's authentication hook: its own API tokens instead of OpenResponses' client keys."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from responses_app.gateway.auth import ClientIdentity, bearer_token


def authenticate(request: HttpRequest) -> ClientIdentity | None:
    """Map ``Authorization: Bearer <host token>`` to the host user; None answers 401."""
    user = settings.HOST_API_TOKENS.get(bearer_token(request.headers) or "")
    if user is None:
        return None
    # Each user sees only their own stored responses; bob may use the mock models only.
    allowed = ("mock-*",) if user == "bob" else ()
    return ClientIdentity(owner=f"host-user:{user}", name=user, allowed_models=allowed)
