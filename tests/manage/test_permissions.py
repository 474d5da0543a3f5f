"""Every management endpoint refuses anonymous callers, client API keys, staff without the model
permission and non-staff users; a permission lets through what it names and nothing more."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from providers_app.models import Provider, RoutingRule
from responses_app.gateway import keys
from responses_app.models import ClientKey, Response
from tests.manage.conftest import MANAGED, token_client

pytestmark = pytest.mark.django_db

# (method, url, model whose permission it needs, the permission)
ENDPOINTS = [
    ("get", "/manage/v1/", None, None),
    ("get", "/manage/v1/schema/", None, None),
    ("get", "/manage/v1/providers/", "provider", "view"),
    ("options", "/manage/v1/providers/", "provider", "view"),
    ("post", "/manage/v1/providers/", "provider", "add"),
    ("get", "/manage/v1/providers/{provider}/", "provider", "view"),
    ("put", "/manage/v1/providers/{provider}/", "provider", "change"),
    ("patch", "/manage/v1/providers/{provider}/", "provider", "change"),
    ("delete", "/manage/v1/providers/{provider}/", "provider", "delete"),
    ("get", "/manage/v1/routes/", "routingrule", "view"),
    ("post", "/manage/v1/routes/", "routingrule", "add"),
    ("get", "/manage/v1/routes/resolve/?model=x", "routingrule", "view"),
    ("get", "/manage/v1/routes/{rule}/", "routingrule", "view"),
    ("patch", "/manage/v1/routes/{rule}/", "routingrule", "change"),
    ("delete", "/manage/v1/routes/{rule}/", "routingrule", "delete"),
    ("get", "/manage/v1/keys/", "clientkey", "view"),
    ("post", "/manage/v1/keys/", "clientkey", "add"),
    ("get", "/manage/v1/keys/{key}/", "clientkey", "view"),
    ("patch", "/manage/v1/keys/{key}/", "clientkey", "change"),
    ("post", "/manage/v1/keys/{key}/rotate/", "clientkey", "change"),
    ("post", "/manage/v1/keys/{key}/revoke/", "clientkey", "change"),
    ("delete", "/manage/v1/keys/{key}/", "clientkey", "delete"),
    ("get", "/manage/v1/usage/", "usagerecord", "view"),
    ("get", "/manage/v1/usage/export/", "usagerecord", "view"),
    ("get", "/manage/v1/responses/", "response", "view"),
    ("get", "/manage/v1/responses/{response}/", "response", "view"),
    ("post", "/manage/v1/responses/{response}/cancel/", "response", "change"),
    ("delete", "/manage/v1/responses/{response}/", "response", "delete"),
]
BODIES = {
    "providers": {"name": "made", "adapter": "mock"},
    "routes": {"pattern": "made-*", "provider": "p"},
    "keys": {"name": "made"},
}


@pytest.fixture
def objects(make_response: Any) -> dict[str, Any]:
    provider = Provider.objects.create(name="p", adapter="mock")
    rule = RoutingRule.objects.create(pattern="p-*", provider=provider)
    key, token = keys.key_create(name="client")
    response = make_response(status="in_progress")
    return {"provider": provider.pk, "rule": rule.pk, "key": key.pk, "response": response.id, "token": token}


def snapshot() -> tuple:
    return (
        list(Provider.objects.values()),
        list(RoutingRule.objects.values()),
        list(ClientKey.objects.values()),
        list(Response.objects.values("id", "status")),
    )


def call(client: APIClient, method: str, url: str, objects: dict[str, Any]) -> Any:
    url = url.format(**objects)
    body = next((b for name, b in BODIES.items() if f"/{name}/" in url), {})
    return (
        getattr(client, method)(url, body, format="json")
        if method in {"post", "put", "patch"}
        else (getattr(client, method)(url))
    )


def callers(objects: dict[str, Any], make_staff: Any) -> dict[str, APIClient]:
    client_key = APIClient()
    client_key.credentials(HTTP_AUTHORIZATION=f"Bearer {objects['token']}")
    client_key_as_token = APIClient()
    client_key_as_token.credentials(HTTP_AUTHORIZATION=f"Token {objects['token']}")
    all_perms = [f"{p}_{m}" for m in MANAGED for p in ("view", "add", "change", "delete")]
    return {
        "anonymous": APIClient(),
        "client key": client_key,
        "client key as a token": client_key_as_token,
        "staff without permissions": token_client(make_staff("plain-staff")),
        "user with every permission but not staff": token_client(
            make_staff("not-staff", *all_perms, staff=False)
        ),
        "inactive staff": _inactive(make_staff("gone", *all_perms)),
    }


def _inactive(user: Any) -> APIClient:
    client = token_client(user)
    user.is_active = False
    user.save()
    return client


@pytest.mark.parametrize(("method", "url", "model", "perm"), ENDPOINTS)
def test_refused_without_staff_and_permission(
    method: str, url: str, model: str | None, perm: str | None, objects: dict[str, Any], make_staff: Any
) -> None:
    before = snapshot()
    for who, client in callers(objects, make_staff).items():
        answer = call(client, method, url, objects)
        assert answer.status_code in {401, 403}, (who, method, url, answer.status_code, answer.content[:200])
        assert b"ork_" not in answer.content
    assert snapshot() == before


@pytest.mark.parametrize(("method", "url", "model", "perm"), [e for e in ENDPOINTS if e[2]])
def test_the_named_permission_lets_through_and_no_other(
    method: str, url: str, model: str, perm: str, objects: dict[str, Any], make_staff: Any
) -> None:
    others = [
        f"{p}_{m}" for m in MANAGED for p in ("view", "add", "change", "delete") if (p, m) != (perm, model)
    ]
    refused = call(token_client(make_staff("almost", *others)), method, url, objects)
    assert refused.status_code == 403, (method, url, refused.content[:200])
    allowed = call(token_client(make_staff("exact", f"{perm}_{model}")), method, url, objects)
    assert allowed.status_code in {200, 201, 204}, (method, url, allowed.status_code, allowed.content[:300])


def test_one_permission_opens_the_root_and_the_schema_not_the_rest(
    objects: dict[str, Any], make_staff: Any
) -> None:
    client = token_client(make_staff("usage-reader", "view_usagerecord"))
    assert client.get("/manage/v1/").status_code == 200
    assert client.get("/manage/v1/schema/").status_code == 200
    assert client.get("/manage/v1/usage/").status_code == 200
    assert client.get("/manage/v1/keys/").status_code == 403
