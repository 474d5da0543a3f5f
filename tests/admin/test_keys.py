"""Client API keys: hashed storage, cached lookup, revocation, allowed models, last-used throttle."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from responses_app.errors import ApiError
from responses_app.gateway import keys
from responses_app.gateway.auth import authenticate_default
from responses_app.models import ClientKey


def request_with(token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return RequestFactory().post("/v1/responses", **headers)


@pytest.mark.django_db
def test_created_key_is_stored_hashed_and_authenticates():
    row, token = keys.key_create(name="billing", allowed_models=["gpt-*"])
    assert token.startswith(f"ork_{row.prefix}_") and len(token) > 40
    stored = ClientKey.objects.get(pk=row.pk)
    assert token not in (stored.secret_hash, stored.prefix, stored.name)
    assert stored.secret_hash == keys.hash_token(token)
    identity = keys.identity_for_key(token)
    assert identity is not None
    assert identity.owner == f"key:{row.prefix}" and identity.name == "billing"
    assert identity.allowed_models == ("gpt-*",)


@pytest.mark.django_db
def test_wrong_secret_malformed_and_unknown_tokens_are_refused():
    row, token = keys.key_create(name="a")
    assert keys.identity_for_key(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.identity_for_key(f"ork_{row.prefix}") is None
    assert keys.identity_for_key("ork_zzzzzzzz_secret") is None
    assert keys.identity_for_key("sk-something") is None


@pytest.mark.django_db
def test_lookups_are_cached_and_revocation_clears_the_cache(django_assert_num_queries):
    row, token = keys.key_create(name="a")
    keys.identity_for_key(token)  # loads the row and writes last_used_at
    with django_assert_num_queries(0):
        for _ in range(20):
            assert keys.identity_for_key(token) is not None
    keys.key_revoke(key=row)
    assert ClientKey.objects.get(pk=row.pk).revoked_at is not None
    assert keys.identity_for_key(token) is None


@pytest.mark.django_db
def test_unknown_prefixes_are_cached_too(django_assert_num_queries):
    keys.identity_for_key("ork_abcdefgh_nope")
    with django_assert_num_queries(0):
        assert keys.identity_for_key("ork_abcdefgh_nope2") is None


@pytest.mark.django_db
def test_last_used_written_at_most_once_a_minute(monkeypatch):
    row, token = keys.key_create(name="a")
    assert ClientKey.objects.get(pk=row.pk).last_used_at is None
    keys.identity_for_key(token)
    first = ClientKey.objects.get(pk=row.pk).last_used_at
    assert first is not None
    keys.reset_cache()
    keys.identity_for_key(token)
    assert ClientKey.objects.get(pk=row.pk).last_used_at == first
    clock = keys.time.monotonic() + keys.LAST_USED_EVERY + 1
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock)
    keys.identity_for_key(token)
    assert ClientKey.objects.get(pk=row.pk).last_used_at > first


@pytest.mark.django_db
def test_stored_keys_exist_counts_revoked_keys():
    assert keys.stored_keys_exist() is False
    row, _ = keys.key_create(name="a")
    assert keys.stored_keys_exist() is True
    keys.key_revoke(key=row)
    assert keys.stored_keys_exist() is True  # revoking every key never reopens the API


@pytest.mark.django_db
def test_default_hook_enforces_stored_keys(settings):
    settings.OPENRESPONSES = {"API_KEYS": ""}
    assert authenticate_default(request_with(None)).owner is None  # no key anywhere: open
    row, token = keys.key_create(name="ci", allowed_models=["mock-*"])
    identity = authenticate_default(request_with(token))
    assert identity.owner == row.owner and identity.allowed_models == ("mock-*",)
    for bad in (None, "ork_00000000_x", "nonsense"):
        with pytest.raises(ApiError) as err:
            authenticate_default(request_with(bad))
        assert err.value.status == 401
    keys.key_revoke(key=row)
    with pytest.raises(ApiError) as err:
        authenticate_default(request_with(token))
    assert err.value.status == 401
