"""The admin login's throttling backend: django-axes, for logins that come with their request.

Axes refuses ``authenticate()`` calls that carry no request (its lockout is per request). The
admin login form and DRF's authentication always pass one; calls without one (Django's test
client ``login()``, scripts) are not an attack surface over HTTP, so they skip the lockout check
instead of failing, and the next backend checks the password as usual.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """``AxesStandaloneBackend`` that lets request-less ``authenticate()`` calls through."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
