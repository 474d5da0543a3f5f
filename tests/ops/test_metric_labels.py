"""Issue 16, finding 9: metric labels come from bounded sets, whatever model names clients send."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from responses_app.gateway import metrics
from tests.support.production import REDIS_HOST, REDIS_PORT, require_services


def finish(model: str, *, provider: str = "mock", code: str | None = None) -> None:
    metrics.record_response(
        model=model,
        provider=provider,
        status="failed" if code else "completed",
        tokens={"input": 3, "output": 5},
        cost=0.0,
        iterations=1,
        first_token_seconds=0.2,
        total_seconds=0.4,
        error={"code": code} if code else None,
    )


def model_labels(text: str) -> set[str]:
    return {
        sample.labels["model"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "model" in sample.labels
    }


@pytest.fixture(params=["in-process", "redis"])
def store(request: pytest.FixtureRequest, settings) -> Iterator[str]:
    """Metrics kept in this process, or in Redis under a prefix of this test's own."""
    if request.param == "redis":
        require_services()
        settings.OPENRESPONSES = {
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            "REDIS_PREFIX": f"labels-{uuid.uuid4().hex[:8]}",
            "METRICS_MAX_LABELS": 5,
            "ROUTES": [{"pattern": "exact-model", "provider": "mock"}],
        }
    else:
        settings.OPENRESPONSES = {
            "REDIS_URL": "",
            "METRICS_MAX_LABELS": 5,
            "ROUTES": [{"pattern": "exact-model", "provider": "mock"}],
        }
    metrics.reset_local()
    yield request.param
    client = metrics.sync_redis()
    if client is not None:
        for key in client.scan_iter(match=f"{metrics.key_prefix()}:*"):
            client.delete(key)
    metrics.reset_local()


@pytest.mark.django_db
def test_client_chosen_model_names_are_collapsed(store: str):
    finish("exact-model")  # a name a route spells out is always its own label
    for i in range(40):
        finish(f"mock-attacker-{i}")  # any mock-* name is served: the client chooses it
    finish("mock-" + "x" * 1_000_000)
    finish("mock-forged\nopenresponses_responses_total 1e9")
    text = metrics.exposition()
    labels = model_labels(text)
    assert "exact-model" in labels and metrics.OTHER in labels
    assert len(labels - {"exact-model", metrics.OTHER}) == 5
    assert len(text) < 50_000  # the 1 MB name is not in it
    assert all(len(label) <= metrics.MAX_LABEL_CHARS for label in labels)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    total = sum(s.value for s in families["openresponses_responses"].samples)
    assert total == 43  # nothing lost: the collapsed ones count under "other"
    # Once the set is full, even names seen before the cap stay themselves.
    finish("mock-attacker-0")
    finish("exact-model")
    assert model_labels(metrics.exposition()) == labels


@pytest.mark.django_db
def test_upstream_error_codes_are_bounded(store: str):
    for i in range(20):
        metrics.record_upstream_error(provider="mock", code=f"code-{i}")
    metrics.record_upstream_error(provider="mock", code="c" * 500)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition())}
    codes = {s.labels["code"] for s in families["openresponses_upstream_errors"].samples}
    assert len(codes) == 6 and metrics.OTHER in codes
