"""The console's dashboard: series computed from usage rows, SVG charts, running responses, permissions."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from responses_app.admin import charts
from responses_app.admin.dashboard import dashboard_data
from responses_app.models import UsageRecord

NOW = 1_790_000_000.0  # a fixed clock: buckets are computed from it


def record(
    n: int, *, ago: float, model: str, key: str = "alpha", ttft: float | None = 0.5, **extra: Any
) -> None:
    created = NOW - ago
    UsageRecord.objects.create(
        response_id=f"resp_dash_{n}",
        owner=f"key:{key}",
        key_name=key,
        model=model,
        provider=extra.pop("provider", "openai"),
        status=extra.pop("status", "completed"),
        day=datetime.fromtimestamp(created, tz=UTC).date(),
        created_at=created,
        input_tokens=10,
        output_tokens=5,
        cost=Decimal("0.25"),
        first_token_seconds=ttft,
        **extra,
    )


def test_percentile_and_axis_helpers() -> None:
    assert charts.percentile([], 0.5) is None
    assert charts.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert charts.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert [charts.nice_ceiling(v) for v in (0, 0.7, 3, 7, 23, 101)] == [1.0, 1.0, 5, 10, 25, 200]


def test_chart_escapes_names_and_marks_every_point() -> None:
    svg = charts.line_chart(
        chart_id="c",
        labels=["a", "b", "c"],
        series=[charts.Series("<script>", "#000", [1, None, 3])],
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<circle") == 2 and "<polyline" not in svg  # the gap splits the line
    assert "No data" in charts.line_chart(chart_id="e", labels=["a"], series=[])


@pytest.mark.django_db
def test_series_per_model_over_a_day() -> None:
    record(1, ago=30, model="gpt-4o", ttft=0.2)
    record(2, ago=40, model="gpt-4o", ttft=0.4, status="failed")
    record(3, ago=50, model="gpt-4o", ttft=2.0)
    record(4, ago=3 * 3600 + 30, model="claude", provider="anthropic", ttft=1.0)
    record(5, ago=2 * 86400, model="old")  # outside the window
    data = dashboard_data(window="24h", by="model", now=NOW)
    assert data["totals"]["requests"] == 4 and data["totals"]["errors"] == 1
    assert data["totals"]["tokens"] == 60
    assert [item["name"] for item in data["legend"]] == ["gpt-4o", "claude"]
    requests = next(c for c in data["charts"] if c["key"] == "requests")["svg"]
    assert "gpt-4o · " in requests and re.search(r"gpt-4o · \d\d:00: 3<", requests)
    assert re.search(r"claude · \d\d:00: 1<", requests)
    ttft = next(c for c in data["charts"] if c["key"] == "ttft")["svg"]
    assert re.search(r"gpt-4o · \d\d:00: 0\.4 s<", ttft)  # p50 of 0.2, 0.4, 2.0
    assert re.search(r"gpt-4o · \d\d:00: 2 s<", ttft)  # p95
    by_provider = dashboard_data(window="24h", by="provider", now=NOW)
    assert [item["name"] for item in by_provider["legend"]] == ["openai", "anthropic"]


@pytest.mark.django_db
def test_busiest_groups_and_the_rest_as_other() -> None:
    for n in range(9):
        for m in range(n + 1):
            record(n * 100 + m, ago=60, model=f"model-{n}")
    legend = dashboard_data(window="1h", by="model", now=NOW)["legend"]
    assert [i["name"] for i in legend] == [f"model-{n}" for n in (8, 7, 6, 5, 4, 3)] + ["other"]
    assert legend[-1]["requests"] == 1 + 2 + 3


@pytest.mark.django_db
def test_dashboard_page(admin_client: Any, make_response: Any) -> None:
    record(1, ago=10, model="gpt-4o")
    UsageRecord.objects.filter(response_id="resp_dash_1").update(created_at=time.time() - 10)
    running = make_response(status="in_progress", model="slow-model")
    page = admin_client.get("/admin/responses_app/usagerecord/dashboard/", {"by": "key", "window": "6h"})
    assert page.status_code == 200
    html = page.content.decode()
    for chart in ("requests", "tokens", "cost", "errors", "ttft"):
        assert f'id="or-chart-{chart}"' in html
    assert running.id in html and "slow-model" in html
    assert 'id="or-running-count">1<' in html
    index = admin_client.get("/admin/responses_app/").content.decode()
    assert "/admin/responses_app/usagerecord/dashboard/" in index


@pytest.mark.django_db
def test_dashboard_needs_the_usage_view_permission(client: Any, settings: Any) -> None:
    from django.contrib.auth.models import Permission, User

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.login(username="staff", password="pw")
    assert client.get("/admin/responses_app/usagerecord/dashboard/").status_code == 403
    assert "or-dashboard-link" not in client.get("/admin/responses_app/").content.decode()
    user.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    page = client.get("/admin/responses_app/usagerecord/dashboard/")
    assert page.status_code == 200 and "Running now" not in page.content.decode()
