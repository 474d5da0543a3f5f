"""Management API fixtures: staff users with and without model permissions, their DRF clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.admin.conftest import make_response  # noqa: F401 - a shared fixture

MANAGED = ["provider", "routingrule", "clientkey", "usagerecord", "response"]


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The provider registry and the key cache are per process: never leak rows between tests."""
    from providers_app.registry import registry
    from responses_app.gateway import keys

    registry.reset()
    keys.reset_cache()
    yield
    registry.reset()
    keys.reset_cache()


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """Test users need no slow password hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_staff(db: Any) -> Callable[..., Any]:
    """A staff user holding the given permissions (codenames like ``view_provider``)."""
    from django.contrib.auth.models import Permission, User

    def make(username: str, *codenames: str, staff: bool = True) -> Any:
        user = User.objects.create_user(username, password="pw-" + username, is_staff=staff)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return User.objects.get(pk=user.pk)  # no stale permission cache

    return make


@pytest.fixture
def operator(make_staff: Callable[..., Any]) -> Any:
    """Staff with every permission on the managed models."""
    return make_staff("operator", *[f"{p}_{m}" for m in MANAGED for p in ("view", "add", "change", "delete")])


def token_client(user: Any) -> APIClient:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(operator: Any) -> APIClient:
    """The operator's client, authenticated with a DRF token."""
    return token_client(operator)
