""" "Test connection": one small upstream call through the provider's adapter, over a real socket."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from providers_app.adapters.base import ProviderConfig
from providers_app.connection import check_connection, probe_model
from providers_app.models import Provider
from tests.support.server import free_port
from tests.support.upstream import Reply


def test_mock_provider_answers():
    result = check_connection(ProviderConfig("m", "mock"), "mock-1")
    assert result.ok and "You said" in result.message and result.model == "mock-1"


def test_openai_provider_over_loopback(upstream):
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    config = ProviderConfig("team", "openai", upstream.base_url + "/v1", "sk-probe-secret-0009")
    result = check_connection(config, "gpt-4o-mini")
    assert result.ok, result.message
    (request,) = upstream.requests
    body = json.loads(request.body)
    assert (
        request.path == "/v1/responses" and body["model"] == "gpt-4o-mini" and body["max_output_tokens"] == 16
    )
    assert request.headers["authorization"] == "Bearer sk-probe-secret-0009"


def test_failures_are_reported_without_the_key(upstream):
    upstream.queue(
        Reply.json({"error": {"message": "Incorrect API key provided: sk-probe-secret-0009"}}, status=401)
    )
    config = ProviderConfig(
        "team", "openai", upstream.base_url + "/v1", "sk-probe-secret-0009", max_retries=3
    )
    result = check_connection(config, "gpt-4o-mini")
    assert not result.ok and "401" in result.message and "sk-probe-secret-0009" not in result.message
    assert len(upstream.requests) == 1  # no retries for a probe
    unreachable = ProviderConfig(
        "gone", "openai", f"http://127.0.0.1:{free_port()}/v1", "k", connect_timeout=2
    )
    result = check_connection(unreachable, "gpt-4o-mini")
    assert not result.ok and "Could not reach" in result.message


@pytest.mark.django_db
def test_probe_model_from_options_or_routes():
    from providers_app.registry import registry

    assert probe_model(ProviderConfig("x", "mock", options={"test_model": "mock-probe"})) == "mock-probe"
    assert probe_model(ProviderConfig("mock", "mock")) == "mock"  # the default literal route "mock"
    row = Provider.objects.create(name="team", adapter="openai")
    row.rules.create(pattern="team-*", upstream_model="gpt-4o-mini")
    registry.reset()
    assert probe_model(ProviderConfig("team", "openai")) == "gpt-4o-mini"
    assert probe_model(ProviderConfig("nobody", "openai")) is None


@pytest.mark.django_db
def test_admin_action_and_page(admin_client, upstream):
    ok = Provider.objects.create(name="local-mock", adapter="mock", options={"test_model": "mock-1"})
    bad = Provider.objects.create(
        name="down",
        adapter="openai",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        options={"test_model": "gpt-4o"},
        max_retries=0,
        connect_timeout=2,
    )
    none = Provider.objects.create(name="no-model", adapter="openai")
    reply = admin_client.post(
        reverse("admin:providers_app_provider_changelist"),
        {"action": "test_connection", "_selected_action": [ok.pk, bad.pk, none.pk]},
        follow=True,
    )
    page = reply.content.decode().lower()  # the admin capitalises messages
    assert "local-mock (mock-1): ok" in page
    assert "down (gpt-4o): failed" in page
    assert "no-model: no model to try" in page
    url = reverse("admin:providers_app_provider_test", args=[ok.pk])
    assert 'value="mock-1"' in admin_client.get(url).content.decode()
    page = admin_client.post(url, {"model": "mock-2"}).content.decode()
    assert "Connected" in page and "mock-2" in page
