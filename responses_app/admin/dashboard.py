"""The console's dashboard: requests, tokens, cost, errors and time to first token over time per
key, model or provider (from the usage rows), and the responses running now."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Floor
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from responses_app.admin import charts
from responses_app.models import UNFINISHED, Response, UsageRecord

# window name -> (label, seconds, bucket seconds, label format)
WINDOWS = {
    "1h": ("Past hour", 3600, 150, "%H:%M"),
    "6h": ("Past 6 hours", 6 * 3600, 900, "%H:%M"),
    "24h": ("Past 24 hours", 86400, 3600, "%H:%M"),
    "7d": ("Past 7 days", 7 * 86400, 6 * 3600, "%m-%d %Hh"),
    "30d": ("Past 30 days", 30 * 86400, 86400, "%m-%d"),
}
GROUPS = {"key": "key_name", "model": "model", "provider": "provider"}
TOP_GROUPS = len(charts.PALETTE) - 1
OTHER = "other"
RUNNING_SHOWN = 50


def _bucket_start(now: float, span: int, step: int) -> float:
    """The start of the first bucket: buckets end with the one holding ``now``."""
    return (now // step + 1) * step - span


def dashboard_data(*, window: str, by: str, now: float | None = None) -> dict[str, Any]:
    """Series per group of ``by`` over ``window``: requests, tokens, cost, errors, TTFT p50/p95."""
    label, span, step, label_format = WINDOWS[window]
    field = GROUPS[by]
    now = time.time() if now is None else now
    start = _bucket_start(now, span, step)
    buckets = span // step
    rows = (
        UsageRecord.objects.filter(created_at__gte=start)
        .annotate(bucket=Floor((F("created_at") - start) / step))
        .values("bucket", field)
        .annotate(
            requests=Count("id"),
            tokens=Sum(F("input_tokens") + F("output_tokens")),
            cost=Sum("cost"),
            errors=Count("id", filter=Q(status="failed")),
        )
    )
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row[field] or ""] += row["requests"]
    ranked = sorted(totals, key=lambda g: (-totals[g], g))
    top = ranked if len(ranked) <= TOP_GROUPS + 1 else ranked[:TOP_GROUPS]

    def group_of(name: str) -> str:
        return name if name in top else OTHER

    names = top + ([OTHER] if len(ranked) > len(top) else [])
    metrics = {m: {g: [0.0] * buckets for g in names} for m in ("requests", "tokens", "cost", "errors")}
    for row in rows:
        index = int(row["bucket"])
        if 0 <= index < buckets:
            group = group_of(row[field] or "")
            for metric in metrics:
                metrics[metric][group][index] += float(row[metric] or 0)
    first_tokens: dict[tuple[str, int], list[float]] = defaultdict(list)
    for created, name, seconds in UsageRecord.objects.filter(
        created_at__gte=start, first_token_seconds__isnull=False
    ).values_list("created_at", field, "first_token_seconds"):
        index = int((created - start) // step)
        if 0 <= index < buckets:
            first_tokens[(group_of(name or ""), index)].append(seconds)
    colors = {name: charts.PALETTE[i % len(charts.PALETTE)] for i, name in enumerate(names)}
    labels = [datetime.fromtimestamp(start + i * step, tz=UTC).strftime(label_format) for i in range(buckets)]

    def lines(metric: str) -> list[charts.Series]:
        return [charts.Series(shown(n), colors[n], metrics[metric][n]) for n in names]

    def latency(fraction: float, dashed: bool) -> list[charts.Series]:
        return [
            charts.Series(
                shown(n),
                colors[n],
                [charts.percentile(first_tokens.get((n, i), []), fraction) for i in range(buckets)],
                dashed=dashed,
            )
            for n in names
        ]

    def money(value: float) -> str:
        return f"${value:.4g}"

    def secs(value: float) -> str:
        return f"{value:.3g} s"

    specs = [
        ("requests", "Requests", lines("requests"), {"integer": True}),
        ("tokens", "Tokens (input + output)", lines("tokens"), {}),
        ("cost", "Cost (USD)", lines("cost"), {"fmt": money}),
        ("errors", "Errors (failed responses)", lines("errors"), {"integer": True}),
        (
            "ttft",
            "Time to first token: p50 (solid), p95 (dashed)",
            latency(0.5, False) + latency(0.95, True),
            {"fmt": secs},
        ),
    ]
    drawn = [
        {
            "key": key,
            "title": title,
            "svg": charts.line_chart(chart_id=f"or-chart-{key}", labels=labels, series=series, **options),
        }
        for key, title, series, options in specs
    ]
    every = {m: sum(sum(v) for v in metrics[m].values()) for m in metrics}
    all_first = [s for values in first_tokens.values() for s in values]
    return {
        "window_label": label,
        "bucket_seconds": step,
        "legend": [
            {
                "name": shown(n),
                "color": colors[n],
                "requests": int(sum(metrics["requests"][n])),
            }
            for n in names
        ],
        "charts": drawn,
        "totals": {
            "requests": int(every["requests"]),
            "tokens": int(every["tokens"]),
            "cost": every["cost"],
            "errors": int(every["errors"]),
            "ttft_p50": charts.percentile(all_first, 0.5),
            "ttft_p95": charts.percentile(all_first, 0.95),
        },
    }


def shown(name: str) -> str:
    return name or "(none)"


def running_responses(*, now: float | None = None) -> list[dict[str, Any]]:
    """Unfinished responses, oldest first, with how long they have been running."""
    from responses_app.gateway.usage import key_name

    now = time.time() if now is None else now
    rows = Response.objects.filter(status__in=UNFINISHED).order_by("created_at")[:RUNNING_SHOWN]
    return [
        {
            "response": r,
            "key": key_name(r.owner or ""),
            "age": max(0.0, now - r.created_at),
            "first_token": r.first_token_at is not None,
        }
        for r in rows
    ]


def dashboard_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    window = request.GET.get("window", "24h")
    window = window if window in WINDOWS else "24h"
    by = request.GET.get("by", "model")
    by = by if by in GROUPS else "model"
    can_see_responses = request.user.has_perm("responses_app.view_response")
    context = {
        **model_admin.admin_site.each_context(request),
        **dashboard_data(window=window, by=by),
        "opts": model_admin.model._meta,
        "title": "Dashboard",
        "subtitle": None,
        "windows": [(k, v[0]) for k, v in WINDOWS.items()],
        "window": window,
        "groups": list(GROUPS),
        "by": by,
        "running": running_responses() if can_see_responses else None,
        "running_count": Response.objects.filter(status__in=UNFINISHED).count() if can_see_responses else 0,
    }
    return TemplateResponse(request, "admin/responses_app/dashboard.html", context)
