"""The management API's endpoints: what they change goes through the services, secrets stay hidden,
bad input answers 400 naming the field."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from providers_app.models import Provider, RoutingRule
from providers_app.registry import route_for_model
from responses_app.gateway import keys
from responses_app.models import ClientKey, Response, UsageRecord

pytestmark = pytest.mark.django_db
SECRET = "sk-provider-secret-value-9876"


def everything_said(api: Any, *urls: str) -> str:
    """Every representation of the given URLs (JSON, OPTIONS metadata, browsable HTML)."""
    said = []
    for url in urls:
        said.append(api.get(url).content.decode())
        said.append(api.options(url).content.decode())
        said.append(api.get(url, HTTP_ACCEPT="text/html").content.decode())
    return "\n".join(said)


# ---------------------------------------------------------------------------- providers


def test_provider_secret_is_write_only_everywhere(api: Any) -> None:
    created = api.post(
        "/manage/v1/providers/",
        {"name": "fake", "adapter": "openai_chat", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert "api_key" not in body and body["api_key_set"] is True and body["api_key_last4"] == "9876"
    row = Provider.objects.get(name="fake")
    assert row.api_key_encrypted and SECRET not in row.api_key_encrypted
    pk = body["id"]
    changed = api.patch(f"/manage/v1/providers/{pk}/", {"max_retries": 0}, format="json")
    assert changed.status_code == 200 and SECRET not in changed.content.decode()
    said = everything_said(api, "/manage/v1/providers/", f"/manage/v1/providers/{pk}/")
    said += api.get("/manage/v1/schema/", {"format": "json"}).content.decode()
    assert SECRET not in said and SECRET[:-4] not in said
    # The stored key is kept when a change leaves it out, and the registry sees it decrypted.
    from providers_app.registry import provider_configs

    assert provider_configs()["fake"].api_key == SECRET
    cleared = api.patch(f"/manage/v1/providers/{pk}/", {"clear_api_key": True}, format="json")
    assert cleared.json()["api_key_set"] is False
    assert provider_configs()["fake"].api_key == ""


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "p", "adapter": "no.such.Adapter"}, "adapter"),
        ({"name": "p", "adapter": "openai", "headers": ["x"]}, "headers"),
        ({"name": "p", "adapter": "openai", "headers": {"X": 1}}, "headers"),
        ({"name": "p", "adapter": "openai", "options": "fast"}, "options"),
        (
            {"name": "p", "adapter": "openai", "api_key": "k", "api_key_env": "OPENRESPONSES_PROVIDER_KEY_P"},
            "api_key",
        ),
        ({"name": "p", "adapter": "openai", "api_key_env": "DJANGO_SECRET_KEY"}, "api_key_env"),
        ({"name": "not a slug!", "adapter": "openai"}, "name"),
        ({"adapter": "openai"}, "name"),
        ({"name": "p", "adapter": "openai", "max_retries": -1}, "max_retries"),
        ({"name": "p", "adapter": "openai", "connect_timeout": "soon"}, "connect_timeout"),
    ],
)
def test_provider_bad_input_names_the_field(api: Any, payload: dict[str, Any], field: str) -> None:
    answer = api.post("/manage/v1/providers/", payload, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not Provider.objects.exists()


def test_a_stored_key_is_not_sent_elsewhere(api: Any) -> None:
    """Moving a provider (adapter or base URL) needs its key again, as in the admin."""
    made = api.post(
        "/manage/v1/providers/",
        {"name": "bound", "adapter": "openai_chat", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET},
        format="json",
    ).json()
    url = f"/manage/v1/providers/{made['id']}/"
    moved = api.patch(url, {"base_url": "http://listener.example/v1"}, format="json")
    assert moved.status_code == 400 and "api_key" in moved.json()
    assert Provider.objects.get(pk=made["id"]).base_url == "http://127.0.0.1:9/v1"
    again = api.patch(
        url, {"base_url": "http://other.example/v1", "api_key": "sk-new-key-0000"}, format="json"
    )
    assert again.status_code == 200 and again.json()["api_key_last4"] == "0000"
    assert api.patch(url, {"max_retries": 1}, format="json").status_code == 200


def test_provider_name_is_unique_and_delete_takes_its_rules(api: Any) -> None:
    first = api.post("/manage/v1/providers/", {"name": "one", "adapter": "mock"}, format="json")
    again = api.post("/manage/v1/providers/", {"name": "one", "adapter": "mock"}, format="json")
    assert first.status_code == 201 and again.status_code == 400 and "name" in again.json()
    api.post("/manage/v1/routes/", {"pattern": "one-*", "provider": "one"}, format="json")
    assert route_for_model("one-x").provider == "one"
    assert api.delete(f"/manage/v1/providers/{first.json()['id']}/").status_code == 204
    assert not RoutingRule.objects.exists()
    route = route_for_model("one-x")
    assert route is None or route.provider != "one"


def test_malformed_json_is_a_400_not_a_500(api: Any) -> None:
    answer = api.generic("POST", "/manage/v1/providers/", "{not json", content_type="application/json")
    assert answer.status_code == 400 and "detail" in answer.json()


# ---------------------------------------------------------------------------- routes


def test_routes_and_the_resolve_lookup(api: Any) -> None:
    api.post("/manage/v1/providers/", {"name": "fake", "adapter": "mock"}, format="json")
    made = api.post(
        "/manage/v1/routes/",
        {"pattern": "demo-*", "provider": "fake", "upstream_model": "mock-big", "order": 5},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["provider"] == "fake" and made.json()["provider_source"] == "database"
    looked = api.get("/manage/v1/routes/resolve/", {"model": "demo-7"}).json()
    assert looked["route"]["provider"] == "fake" and looked["route"]["upstream_model"] == "mock-big"
    assert looked["route"]["source"] == "database" and looked["route"]["pattern"] == "demo-*"
    # A change is live at once (the registry was reset by the service).
    api.patch(f"/manage/v1/routes/{made.json()['id']}/", {"upstream_model": ""}, format="json")
    assert api.get("/manage/v1/routes/resolve/", {"model": "demo-7"}).json()["route"]["upstream_model"] == (
        "demo-7"
    )
    api.patch(f"/manage/v1/routes/{made.json()['id']}/", {"enabled": False}, format="json")
    route = api.get("/manage/v1/routes/resolve/", {"model": "demo-7"}).json()["route"]
    assert route is None or route["pattern"] != "demo-*"
    assert api.get("/manage/v1/routes/", {"provider": "fake"}).json()["count"] == 1
    assert api.get("/manage/v1/routes/", {"provider": "nobody"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"pattern": "x-*", "provider": "nobody-knows"}, "provider"),
        ({"pattern": "x-*"}, "provider"),
        ({"provider": "fake"}, "pattern"),
        ({"pattern": "x-*", "provider": "fake", "fallbacks": {"provider": "fake"}}, "fallbacks"),
        ({"pattern": "x-*", "provider": "fake", "fallbacks": [{"provider": "ghost"}]}, "fallbacks"),
        ({"pattern": "x-*", "provider": "fake", "fallbacks": [{"model": "m"}]}, "fallbacks"),
        ({"pattern": "x-*", "provider": "fake", "order": "first"}, "order"),
    ],
)
def test_route_bad_input_names_the_field(api: Any, payload: dict[str, Any], field: str) -> None:
    api.post("/manage/v1/providers/", {"name": "fake", "adapter": "mock"}, format="json")
    answer = api.post("/manage/v1/routes/", payload, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()


def test_route_to_a_provider_outside_the_database(api: Any, settings: Any) -> None:
    settings.OPENRESPONSES = {"PROVIDERS": [{"name": "declared", "adapter": "mock"}]}
    made = api.post("/manage/v1/routes/", {"pattern": "decl-*", "provider": "declared"}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["provider_source"] == "outside the database"
    assert RoutingRule.objects.get().provider_name == "declared"
    assert route_for_model("decl-1").provider == "declared"


def test_resolve_needs_a_model(api: Any) -> None:
    answer = api.get("/manage/v1/routes/resolve/")
    assert answer.status_code == 400 and "model" in answer.json()


# ---------------------------------------------------------------------------- client keys


def test_key_secret_is_shown_once_then_only_its_prefix(api: Any) -> None:
    made = api.post(
        "/manage/v1/keys/",
        {"name": "ci", "allowed_models": ["demo-*"], "rpm": 60, "tpm": 1000, "max_concurrent": 2},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made["Cache-Control"] == "no-store"
    body = made.json()
    token = body["key"]
    assert token.startswith(f"ork_{body['prefix']}_") and body["token_hint"] == f"ork_{body['prefix']}_…"
    identity = keys.identity_for_key(token)
    assert identity is not None and identity.owner == body["owner"] == f"key:{body['prefix']}"
    assert identity.allowed_models == ("demo-*",)
    assert identity.extra["limits"] == {"rpm": 60, "tpm": 1000, "max_concurrent": 2}
    secret_part = token.split("_", 2)[2]
    said = everything_said(api, "/manage/v1/keys/", f"/manage/v1/keys/{body['id']}/")
    assert secret_part not in said and '"key"' not in api.get("/manage/v1/keys/").content.decode()


def test_key_limits_change_rotate_and_revoke(api: Any) -> None:
    body = api.post("/manage/v1/keys/", {"name": "ci"}, format="json").json()
    pk, first = body["id"], body["key"]
    changed = api.patch(f"/manage/v1/keys/{pk}/", {"rpm": 5, "allowed_models": [" gpt-* "]}, format="json")
    assert changed.status_code == 200 and changed.json()["allowed_models"] == ["gpt-*"]
    assert keys.identity_for_key(first).extra["limits"]["rpm"] == 5  # the cache was reset
    rotated = api.post(f"/manage/v1/keys/{pk}/rotate/")
    assert rotated.status_code == 200 and rotated["Cache-Control"] == "no-store"
    second = rotated.json()["key"]
    assert second != first and rotated.json()["prefix"] == body["prefix"]
    assert keys.identity_for_key(first) is None
    assert keys.identity_for_key(second).owner == body["owner"]
    revoked = api.post(f"/manage/v1/keys/{pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert "key" not in revoked.json()
    assert keys.identity_for_key(second) is None
    refused = api.post(f"/manage/v1/keys/{pk}/rotate/")
    assert refused.status_code == 400 and "non_field_errors" in refused.json()
    assert api.get("/manage/v1/keys/", {"active": "true"}).json()["count"] == 0
    assert api.get("/manage/v1/keys/", {"active": "false"}).json()["count"] == 1
    assert api.delete(f"/manage/v1/keys/{pk}/").status_code == 204
    assert not ClientKey.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "k", "rpm": -1}, "rpm"),
        ({"name": "k", "tpm": "lots"}, "tpm"),
        ({"name": "k", "allowed_models": "gpt-*"}, "allowed_models"),
        ({"name": "k", "allowed_models": [{"x": 1}]}, "allowed_models"),
        ({"rpm": 5}, "name"),
        ({"name": "k", "retention_days": 1.5}, "retention_days"),
    ],
)
def test_key_bad_input_names_the_field(api: Any, payload: dict[str, Any], field: str) -> None:
    answer = api.post("/manage/v1/keys/", payload, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not ClientKey.objects.exists()


def test_a_token_cannot_be_set_or_changed_by_hand(api: Any) -> None:
    body = api.post(
        "/manage/v1/keys/", {"name": "ci", "prefix": "aaaaaaaa", "key": "mine"}, format="json"
    ).json()
    assert body["prefix"] != "aaaaaaaa" and body["key"] != "mine"
    api.patch(f"/manage/v1/keys/{body['id']}/", {"prefix": "bbbbbbbb"}, format="json")
    assert ClientKey.objects.get().prefix == body["prefix"]


# ---------------------------------------------------------------------------- usage


def usage(
    response_id: str, *, day: str, key: str, model: str, provider: str, tokens: int, **extra: Any
) -> None:
    when = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    UsageRecord.objects.create(
        response_id=response_id,
        owner=f"key:{key}",
        key_name=key,
        model=model,
        provider=provider,
        status=extra.pop("status", "completed"),
        day=when.date(),
        created_at=when.timestamp(),
        input_tokens=tokens,
        output_tokens=tokens * 2,
        cost=Decimal("0.5"),
        **extra,
    )


@pytest.fixture
def usage_rows(db: Any) -> None:
    usage("r1", day="2026-11-01", key="alpha", model="gpt-4o", provider="openai", tokens=10)
    usage("r2", day="2026-11-01", key="alpha", model="gpt-4o", provider="openai", tokens=5, status="failed")
    usage("r3", day="2026-11-02", key="alpha", model="claude", provider="anthropic", tokens=7)
    usage("r4", day="2026-11-02", key="beta", model="gpt-4o", provider="openai", tokens=1)


def test_usage_summed_by_key_model_provider_and_day(api: Any, usage_rows: None) -> None:
    rows = api.get("/manage/v1/usage/").json()["results"]
    assert len(rows) == 3
    first = rows[0]  # newest day first
    assert first["day"] == "2026-11-02"
    by = {(r["key_name"], r["model"], r["day"]): r for r in rows}
    alpha = by[("alpha", "gpt-4o", "2026-11-01")]
    assert alpha["responses"] == 2 and alpha["errors"] == 1
    assert alpha["input_tokens"] == 15 and alpha["output_tokens"] == 30 and alpha["cost"] == "1.00000000"
    by_key = api.get("/manage/v1/usage/", {"group_by": "key"}).json()["results"]
    assert [(r["key_name"], r["responses"], r["input_tokens"]) for r in by_key] == [
        ("alpha", 3, 22),
        ("beta", 1, 1),
    ]
    assert set(by_key[0]) >= {"key_name", "owner"} and "model" not in by_key[0]
    by_provider = api.get("/manage/v1/usage/", {"group_by": "provider"}).json()["results"]
    assert {r["provider"]: r["responses"] for r in by_provider} == {"anthropic": 1, "openai": 3}


def test_usage_time_range_and_filters(api: Any, usage_rows: None) -> None:
    day2 = api.get("/manage/v1/usage/", {"group_by": "model", "since": "2026-11-02"}).json()["results"]
    assert {r["model"]: r["responses"] for r in day2} == {"claude": 1, "gpt-4o": 1}
    day1 = api.get(
        "/manage/v1/usage/", {"group_by": "day", "since": "2026-11-01T00:00:00Z", "until": "2026-11-02"}
    ).json()["results"]
    assert [(r["day"], r["responses"]) for r in day1] == [("2026-11-01", 2)]
    beta = api.get("/manage/v1/usage/", {"group_by": "model", "key": "beta"}).json()["results"]
    assert [(r["model"], r["responses"]) for r in beta] == [("gpt-4o", 1)]
    bad = api.get("/manage/v1/usage/", {"until": "yesterday-ish"})
    assert bad.status_code == 400 and "until" in bad.json()
    bad = api.get("/manage/v1/usage/", {"group_by": "key,colour"})
    assert bad.status_code == 400 and "group_by" in bad.json()


def test_usage_csv_export(api: Any, usage_rows: None) -> None:
    answer = api.get("/manage/v1/usage/export/", {"group_by": "key,day", "since": "2026-11-01"})
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert list(rows[0]) == [
        "key_name",
        "owner",
        "day",
        "responses",
        "errors",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost",
    ]
    assert {(r["key_name"], r["day"], r["responses"]) for r in rows} == {
        ("alpha", "2026-11-01", "2"),
        ("alpha", "2026-11-02", "1"),
        ("beta", "2026-11-02", "1"),
    }


# ---------------------------------------------------------------------------- responses


def test_responses_search_filter_cancel_delete(api: Any, make_response: Any) -> None:
    done = make_response(status="completed", model="gpt-4o", inputs=None)
    running = make_response(status="in_progress", model="claude-x")
    Response.objects.filter(pk=running.pk).update(owner="key:abcdabcd", search_text="the blue whale")
    listed = api.get("/manage/v1/responses/").json()
    assert listed["count"] == 2 and "resource" not in listed["results"][0]
    assert [
        r["id"] for r in api.get("/manage/v1/responses/", {"status": "in_progress"}).json()["results"]
    ] == [running.id]
    assert [r["id"] for r in api.get("/manage/v1/responses/", {"model": "gpt-4o"}).json()["results"]] == [
        done.id
    ]
    assert [r["id"] for r in api.get("/manage/v1/responses/", {"search": "whale"}).json()["results"]] == [
        running.id
    ]
    assert [
        r["id"] for r in api.get("/manage/v1/responses/", {"owner": "key:abcdabcd"}).json()["results"]
    ] == [running.id]
    detail = api.get(f"/manage/v1/responses/{done.id}/").json()
    assert detail["resource"]["id"] == done.id and detail["resource"]["object"] == "response"
    cancelled = api.post(f"/manage/v1/responses/{running.id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.post(f"/manage/v1/responses/{running.id}/cancel/")
    assert again.status_code == 409
    assert api.delete(f"/manage/v1/responses/{done.id}/").status_code == 204
    assert not Response.objects.filter(pk=done.pk).exists()
    assert api.get("/manage/v1/responses/resp_nope/").status_code == 404


def test_responses_filter_by_key_name(api: Any, make_response: Any) -> None:
    row, _ = keys.key_create(name="team-a")
    mine = make_response()
    make_response()
    Response.objects.filter(pk=mine.pk).update(owner=row.owner)
    found = api.get("/manage/v1/responses/", {"key": "team-a"}).json()["results"]
    assert [r["id"] for r in found] == [mine.id] and found[0]["key_name"] == "team-a"


def test_pages(api: Any) -> None:
    for i in range(7):
        keys.key_create(name=f"k{i}")
    page = api.get("/manage/v1/keys/", {"page_size": 3, "ordering": "name"}).json()
    assert page["count"] == 7 and len(page["results"]) == 3 and page["next"]
    assert [k["name"] for k in page["results"]] == ["k0", "k1", "k2"]
    assert api.get("/manage/v1/keys/", {"page": 99}).status_code == 404


def test_browsable_api_for_a_logged_in_staff_user(operator: Any) -> None:
    from django.test import Client

    browser = Client()
    assert browser.login(username="operator", password="pw-operator")
    for url in ["/manage/v1/", "/manage/v1/providers/", "/manage/v1/keys/", "/manage/v1/usage/"]:
        page = browser.get(url, HTTP_ACCEPT="text/html")
        assert page.status_code == 200, url
        assert "Django REST framework" in page.content.decode()
    # A session write needs the CSRF token, like any form post.
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="operator", password="pw-operator")
    refused = strict.post("/manage/v1/keys/", json.dumps({"name": "x"}), content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]


ODD_INPUTS = [
    ("post", "/manage/v1/providers/", {"name": "p", "adapter": "mock", "headers": None}),
    ("post", "/manage/v1/providers/", {"name": "p" * 300, "adapter": "mock"}),
    ("post", "/manage/v1/providers/", {"name": "p", "adapter": "", "enabled": "maybe"}),
    ("post", "/manage/v1/providers/", ["not", "an", "object"]),
    ("post", "/manage/v1/routes/", {"pattern": "", "provider": ""}),
    ("post", "/manage/v1/routes/", {"pattern": "x", "provider": None, "fallbacks": None}),
    ("post", "/manage/v1/routes/", {"pattern": "x", "provider": "p", "enabled": [1]}),
    ("post", "/manage/v1/keys/", {"name": "", "allowed_models": None}),
    ("post", "/manage/v1/keys/", {"name": "k", "max_concurrent": 10**20}),
    ("get", "/manage/v1/keys/not-a-number/", None),
    ("post", "/manage/v1/keys/not-a-number/rotate/", None),
    ("get", "/manage/v1/routes/resolve/?model=" + "m" * 300, None),
    ("get", "/manage/v1/usage/?since=2026-13-45", None),
    ("get", "/manage/v1/usage/?group_by=", None),
    ("get", "/manage/v1/usage/?page_size=abc&ordering=nonsense", None),
    ("get", "/manage/v1/responses/?status=done&background=perhaps", None),
    ("get", "/manage/v1/responses/?search=%00%27%22", None),
    ("post", "/manage/v1/responses/resp_missing/cancel/", None),
]


@pytest.mark.parametrize(("method", "url", "body"), ODD_INPUTS)
def test_odd_input_is_never_a_server_error(api: Any, method: str, url: str, body: Any) -> None:
    Provider.objects.create(name="p", adapter="mock")
    answer = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
    assert answer.status_code < 500, answer.content[:300]
    if answer.status_code == 400:
        assert isinstance(answer.json(), dict | list)
