"""A route's fallback provider answers when the first one returns 503 before its first byte."""

from __future__ import annotations

import json
import sqlite3

import httpx

from responses_app.services import compaction
from tests.ops.conftest import auth
from tests.support.api import create, output_text, stream


def test_fallback_after_a_503(ops_http: httpx.Client, flaky_upstream):
    resource = create(ops_http, {"model": "flaky-1", "input": "hello"}, headers=auth("team-a"))
    assert resource["status"] == "completed"
    assert output_text(resource) == "Answered by the backup."
    paths = [r.path for r in flaky_upstream.requests]
    assert paths == ["/flaky/v1/chat/completions", "/backup/v1/chat/completions"], paths
    assert flaky_upstream.requests[0].json()["model"] == "flaky-1"
    assert flaky_upstream.requests[1].json()["model"] == "backup-model"  # the fallback's upstream model


def test_fallback_when_streaming_and_the_chain_continues(ops_http: httpx.Client, flaky_upstream, ops_server):
    events = stream(ops_http, {"model": "flaky-1", "input": "hello"}, headers=auth("team-a"))
    first = events[-1]["response"]
    assert first["status"] == "completed" and output_text(first) == "Answered by the backup."
    # A continuation starts on the routed provider again, falls back again, and carries the history.
    flaky_upstream.requests.clear()
    second = create(
        ops_http,
        {"model": "flaky-1", "input": "and now?", "previous_response_id": first["id"]},
        headers=auth("team-a"),
    )
    assert second["status"] == "completed"
    sent = flaky_upstream.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "Answered by the backup."


def test_the_response_records_the_provider_that_answered(ops_server, ops_http: httpx.Client, flaky_upstream):
    """Response.provider is the fallback's (seen in usage and metrics, labelled by provider)."""
    create(ops_http, {"model": "flaky-1", "input": "count me"}, headers=auth("team-a"))
    text = ops_http.get("/metrics", headers={"Authorization": "Bearer metrics-scrape-token-0007"}).text
    assert 'openresponses_responses_total{model="flaky-1",provider="backup",status="completed"}' in text
    assert 'openresponses_upstream_errors_total{provider="flaky",code="upstream_error"}' in text


def test_fallbacks_from_the_config_file_and_the_database(db, settings, tmp_path):
    """Routes carry their fallbacks (model defaulting to the requested one), from either source."""
    import json

    import pytest

    from providers_app.models import RoutingRule
    from providers_app.registry import ConfigError, registry, route_for_model

    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "routes": [
                    {
                        "pattern": "team-*",
                        "provider": "openai",
                        "fallbacks": [{"provider": "anthropic", "model": "claude-x"}, "mock"],
                    }
                ]
            }
        )
    )
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "CONFIG_FILE": str(config)}
    registry.reset()
    assert route_for_model("team-1").fallbacks == (("anthropic", "claude-x"), ("mock", "team-1"))
    RoutingRule.objects.create(
        pattern="db-*", provider_name="openai", fallbacks=[{"provider": "mock"}, {"provider": "nowhere"}]
    )
    registry.reset()
    assert route_for_model("db-7").fallbacks == (("mock", "db-7"),)  # an unknown provider is skipped
    config.write_text(
        json.dumps(
            {"routes": [{"pattern": "x-*", "provider": "openai", "fallbacks": [{"provider": "nowhere"}]}]}
        )
    )
    registry.reset()
    with pytest.raises(ConfigError, match="unknown fallback provider"):
        route_for_model("x-1")
    registry.reset()


def test_compaction_falls_back_like_any_sample(ops_server, ops_http: httpx.Client, flaky_upstream):
    """The summarizing sample of a compact request uses the route's fallback when its provider is down."""
    result = ops_http.post(
        "/v1/responses/compact",
        json={"model": "flaky-1", "input": "Summarise me, please."},
        headers=auth("team-a"),
    )
    assert result.status_code == 200, result.text
    item = [i for i in result.json()["output"] if i["type"] == "compaction"][0]
    assert compaction.unseal(item["encrypted_content"])["summary"] == "Answered by the backup."
    paths = [r.path for r in flaky_upstream.requests[-2:]]
    assert paths[0].startswith("/flaky/") and paths[1].startswith("/backup/")
    # The sample is stored like any other: the provider that answered and its wire log.
    with sqlite3.connect(ops_server.env["OPENRESPONSES_SQLITE_PATH"]) as db:
        provider, wire_log = db.execute(
            "SELECT provider, wire_log FROM responses_app_response WHERE id = ?", [result.json()["id"]]
        ).fetchone()
    assert provider == "backup"
    assert [entry["url"].split("/")[3] for entry in json.loads(wire_log)] == ["flaky", "backup"]
