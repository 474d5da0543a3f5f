"""Retention (openresponses_purge), usage rows and cost, the usage admin and its CSV, pricing, traces."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from decimal import Decimal

import pytest
from django.core.management import call_command

from responses_app.gateway import keys
from responses_app.gateway.pricing import cost_of, price_for
from responses_app.models import Response, ResponseEvent, ResponseItem, UsageRecord

DAY = 86400


@pytest.fixture(autouse=True)
def _fresh_caches():
    keys.reset_cache()
    yield
    keys.reset_cache()


@pytest.fixture
def keys_file(tmp_path, settings, monkeypatch):
    path = tmp_path / "openresponses.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {"name": "short", "key_env": "SHORT_KEY", "retention_days": 1},
                    {"name": "forget-me", "key_env": "FORGET_KEY"},
                ],
                "prices": {"priced-*": {"input": 2, "cached_input": 1, "output": 10, "reasoning": 20}},
            }
        )
    )
    monkeypatch.setenv("SHORT_KEY", "sk-short-0001")
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "CONFIG_FILE": str(path), "RETENTION_DAYS": 30}
    return path


def make(
    owner: str,
    *,
    age_days: float = 0,
    status: str = "completed",
    store: bool = True,
    model: str = "mock-1",
    usage: dict | None = None,
) -> Response:
    from responses_app.services.responses import response_finish

    created = time.time() - age_days * DAY
    response = Response.objects.create(
        id=f"resp_{owner.replace(':', '')}_{time.monotonic_ns()}",
        model=model,
        provider="mock",
        owner=owner,
        store=store,
        created_at=created,
        heartbeat_at=created,
    )
    ResponseItem.objects.create(
        response=response,
        kind="input",
        position=0,
        item_id="msg_1",
        item_type="message",
        data={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    )
    ResponseEvent.objects.create(
        response=response, sequence_number=0, type="response.created", payload="{}", created_at=created
    )
    if status != "queued":
        response_finish(response_id=response.id, status=status, output=[], usage=usage)
        Response.objects.filter(id=response.id).update(completed_at=created + 1)
    return Response.objects.get(id=response.id)


@pytest.mark.django_db
def test_purge_applies_key_and_global_retention(keys_file, capsys):
    old_short = make("cfg:short", age_days=2)
    new_short = make("cfg:short", age_days=0.5)
    old_other = make("key:abcdefgh", age_days=31)
    young_other = make("key:abcdefgh", age_days=29)
    running = make("key:abcdefgh", age_days=40, status="queued")
    unstored_old = make("key:abcdefgh", age_days=0.1, store=False)  # 2.4 hours: past the 1-hour minimum
    unstored_new = make(
        "key:abcdefgh", age_days=0.01, store=False
    )  # 15 minutes: a WebSocket may still continue it
    chained = make("key:abcdefgh", age_days=1)
    Response.objects.filter(id=chained.id).update(previous_response=old_other)
    call_command("openresponses_purge", "--dry-run")
    assert Response.objects.count() == 8
    call_command("openresponses_purge")
    out = capsys.readouterr().out
    assert "Deleted 3 expired response(s)" in out, out
    left = set(Response.objects.values_list("id", flat=True))
    assert left == {new_short.id, young_other.id, running.id, unstored_new.id, chained.id}
    assert not ResponseItem.objects.filter(
        response_id__in=[old_short.id, old_other.id, unstored_old.id]
    ).exists()
    assert not ResponseEvent.objects.filter(
        response_id__in=[old_short.id, old_other.id, unstored_old.id]
    ).exists()
    assert Response.objects.get(id=chained.id).previous_response_id is None
    # Usage outlives the responses it describes.
    assert UsageRecord.objects.filter(response_id=old_short.id).exists()


@pytest.mark.django_db
def test_purge_one_key_on_request(keys_file, capsys):
    from responses_app.gateway.keys import key_create

    row, _ = key_create(name="forget-me")
    mine = [make(row.owner), make("cfg:forget-me"), make("cfg:forget-me", status="queued")]
    other = make("cfg:short")
    call_command("openresponses_purge", "--key", "forget-me")
    assert "Deleted 3 response(s) of key 'forget-me'" in capsys.readouterr().out
    assert list(Response.objects.values_list("id", flat=True)) == [other.id]
    assert not ResponseItem.objects.filter(response_id__in=[r.id for r in mine]).exists()
    with pytest.raises(Exception, match="No client key named"):
        call_command("openresponses_purge", "--key", "nobody")


@pytest.mark.django_db
def test_usage_row_cost_and_admin_pages(keys_file, admin_client):
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 400},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 100},
        "total_tokens": 1500,
    }
    response = make("cfg:short", model="priced-model", usage=usage)
    make("cfg:short", model="priced-model", status="cancelled", usage=usage)
    make("key:abcdefgh", model="mock-1", usage=usage)
    row = UsageRecord.objects.get(response_id=response.id)
    # 600 uncached x 2 + 400 cached x 1 + 400 output x 10 + 100 reasoning x 20, per million.
    assert row.cost == Decimal("0.00760000")
    assert (row.input_tokens, row.cached_tokens, row.output_tokens, row.reasoning_tokens, row.key_name) == (
        1000,
        400,
        500,
        100,
        "short",
    )
    page = admin_client.get("/admin/responses_app/usagerecord/")
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        "or-usage-by-key" in html and "priced-model" in html and "0.0152" in html
    )  # two priced responses (cancelled counts)
    export = admin_client.get("/admin/responses_app/usagerecord/?export=csv&days=7")
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    priced = [r for r in rows if r["model"] == "priced-model"]
    assert (
        len(priced) == 1
        and priced[0]["key"] == "short"
        and priced[0]["responses"] == "2"
        and Decimal(priced[0]["cost"]) == Decimal("0.0152")
    )
    keys_page = admin_client.get("/admin/responses_app/clientkey/").content.decode()
    assert "or-config-keys" in keys_page and "SHORT_KEY" in keys_page and "forget-me" in keys_page
    assert "sk-short-0001" not in keys_page


def test_default_prices_and_overrides(settings):
    settings.OPENRESPONSES = {
        **settings.OPENRESPONSES,
        "PRICES": {"gpt-4o-mini*": {"input": 1, "output": 1}},
        "CONFIG_FILE": "",
    }
    assert price_for("gpt-4o-mini-2024")["input"] == Decimal(1)
    assert price_for("gpt-4o-2024-08-06")["output"] == Decimal("10.0")
    assert price_for("claude-opus-4-5-20251101")["input"] == Decimal("5.0")
    assert price_for("unknown-model") is None and cost_of("unknown-model", {"input_tokens": 10}) == 0
    assert cost_of("gpt-4o", {"input_tokens": 1_000_000, "output_tokens": 0}) == Decimal("2.5")


def test_a_price_looked_up_before_follows_the_prices_when_they_change(settings, tmp_path):
    settings.OPENRESPONSES = {
        **settings.OPENRESPONSES,
        "PRICES": {"priced-*": {"input": 1, "output": 2}},
        "CONFIG_FILE": "",
    }
    assert price_for("priced-x")["input"] == Decimal(1)
    price_for("priced-x")["input"] = Decimal(99)  # (the caller's own copy)
    assert price_for("priced-x")["input"] == Decimal(1)
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "PRICES": {"priced-*": {"input": 3, "output": 4}}}
    assert price_for("priced-x")["input"] == Decimal(3)
    config = tmp_path / "openresponses.json"
    config.write_text(json.dumps({"prices": {"priced-*": {"input": 5, "output": 6}}}))
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "CONFIG_FILE": str(config)}
    assert price_for("priced-x")["input"] == Decimal(5)


@pytest.mark.django_db(transaction=True)
def test_one_span_per_sample_and_tool_call(settings):
    """With OpenTelemetry installed: the loop opens a span per sample and per hosted tool call."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from providers_app.registry import route_for_model
    from responses_app.api.validation import validate_create
    from responses_app.loop.runner import run_response
    from responses_app.observability import tracing
    from responses_app.services.responses import response_create

    settings.OPENRESPONSES = {
        **settings.OPENRESPONSES,
        "HOSTED_TOOLS": ["tests.support.hosted_tools.get_weather"],
        "CONFIG_FILE": "",
    }
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing._tracer[:] = [provider.get_tracer("openresponses")]
    try:
        body = {
            "model": "mock-1",
            "input": "weather in Paris?",
            "tools": [{"type": "function", "name": "get_weather", "hosted": True}],
        }
        create = validate_create(body, hosted_tool_names=frozenset({"get_weather"}))
        response = response_create(
            request=create, owner=None, route=route_for_model("mock-1"), request_id="req_test"
        )
        assert asyncio.run(run_response(response.id)) == "completed"
    finally:
        tracing.reset()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("openresponses.sample") == 2 and names.count("openresponses.tool_call") == 1, names
    assert trace  # the API is importable: the optional extra is installed here


@pytest.mark.django_db
def test_metrics_for_staff_sessions_only(admin_client, client):
    assert client.get("/metrics").status_code == 403
    response = admin_client.get("/metrics")
    assert response.status_code == 200 and b"# TYPE openresponses_responses_total counter" in response.content


def test_prompts_are_logged_only_when_turned_on(settings, caplog):
    import logging

    from responses_app.observability.logs import log_prompt

    logger = logging.getLogger("tests.ops.prompts")
    with caplog.at_level(logging.INFO, logger="tests.ops.prompts"):
        log_prompt(logger, "resp_1", "the secret prompt")
        assert "the secret prompt" not in caplog.text
        settings.OPENRESPONSES = {**settings.OPENRESPONSES, "LOG_PROMPTS": "1"}
        log_prompt(logger, "resp_1", "the secret prompt")
    assert "the secret prompt" in caplog.text
