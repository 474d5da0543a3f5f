"""The DRF authentication bridge of the Responses API (``OPENRESPONSES["DRF_AUTHENTICATION_CLASSES"]``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from responses_app.api.websocket import HandshakeRequest
from responses_app.errors import ApiError
from responses_app.gateway import keys
from responses_app.gateway.auth import authenticate

pytestmark = pytest.mark.django_db
TOKEN_AUTH = {"DRF_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"]}


class StrictBearer(BaseAuthentication):
    """Like a JWT class: claims every ``Bearer`` header, fails on anything it cannot read."""

    def authenticate(self, request: Any) -> Any:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Bearer "):
            raise AuthenticationFailed("Given token not valid for any token type")
        return None


def token_of(user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def test_a_token_user_owns_as_user_pk(make_staff: Any, settings: Any) -> None:
    settings.OPENRESPONSES = TOKEN_AUTH
    user = make_staff("carol", staff=False)
    request = RequestFactory().post("/v1/responses", HTTP_AUTHORIZATION=f"Token {token_of(user)}")
    identity = authenticate(request)
    assert identity.owner == f"user:{user.pk}" and identity.name == "carol"


def test_the_websocket_handshake_authenticates_the_same_way(make_staff: Any, settings: Any) -> None:
    settings.OPENRESPONSES = TOKEN_AUTH
    user = make_staff("dave", staff=False)
    scope = {"headers": [(b"authorization", f"Token {token_of(user)}".encode())], "path": "/v1/responses"}
    assert authenticate(HandshakeRequest(scope)).owner == f"user:{user.pk}"


def test_without_the_setting_a_token_is_not_read(make_staff: Any, settings: Any) -> None:
    settings.OPENRESPONSES = {}
    keys.key_create(name="closes-the-api")
    user = make_staff("erin", staff=False)
    request = RequestFactory().post("/v1/responses", HTTP_AUTHORIZATION=f"Token {token_of(user)}")
    with pytest.raises(ApiError) as raised:
        authenticate(request)
    assert raised.value.status == 401


def test_inactive_users_and_unknown_tokens_are_refused(make_staff: Any, settings: Any) -> None:
    settings.OPENRESPONSES = TOKEN_AUTH
    user = make_staff("frank", staff=False)
    token = token_of(user)
    user.is_active = False
    user.save()
    for header in (f"Token {token}", "Token nope", ""):
        request = RequestFactory().post("/v1/responses", HTTP_AUTHORIZATION=header)
        with pytest.raises(ApiError) as raised:
            authenticate(request)
        assert raised.value.status == 401, header


def test_client_keys_pass_a_class_that_claims_every_bearer(settings: Any) -> None:
    settings.OPENRESPONSES = {"DRF_AUTHENTICATION_CLASSES": [f"{__name__}.StrictBearer"]}
    row, token = keys.key_create(name="job")
    ok = authenticate(RequestFactory().post("/v1/responses", HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert ok.owner == row.owner
    with pytest.raises(ApiError) as raised:
        authenticate(RequestFactory().post("/v1/responses", HTTP_AUTHORIZATION="Bearer ork_bad"))
    assert raised.value.status == 401 and "not valid" in raised.value.message


def test_a_class_that_does_not_import_is_a_system_check_error(settings: Any) -> None:
    from responses_app.checks import check_import_paths

    settings.OPENRESPONSES = {"DRF_AUTHENTICATION_CLASSES": ["rest_framework.authentication.NoSuchAuth"]}
    found = [m for m in check_import_paths() if m.id == "openresponses.E009"]
    assert len(found) == 1 and "NoSuchAuth" in found[0].msg
    settings.OPENRESPONSES = TOKEN_AUTH
    assert not [m for m in check_import_paths() if m.id == "openresponses.E009"]
