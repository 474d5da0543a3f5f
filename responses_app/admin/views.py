"""The admin's response pages: transcript, event log, raw JSON, live events and cancel.

Thin views: reads go through :mod:`selectors`-style helpers here and :mod:`transcript`; the
cancel goes through :func:`services.flows.cancel_response` like the API's cancel does.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from responses_app import selectors
from responses_app.admin import transcript
from responses_app.models import Response, ResponseEvent, ResponseItem
from responses_app.services import flows
from responses_app.states import TERMINAL_EVENT_TYPES

MAX_CHAIN = 50
SETTLE_SECONDS = 10.0
EVENTS_PAGE = 500


def as_datetime(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def _get(object_id: str) -> Response:
    response = Response.objects.filter(id=unquote(object_id)).first()
    if response is None:
        raise Http404("No such response")
    return response


def settled(response: Response) -> bool:
    """Finished and fully stored: the loop wrote its final output (or will never come back).

    A cancel flips the status at once, but the loop stores the partial output a moment later
    and then emits the terminal event, so the page keeps watching until then.
    """
    if not response.is_finished:
        return False
    if response.completed_at is not None:
        return True
    if ResponseEvent.objects.filter(response=response, type__in=TERMINAL_EVENT_TYPES).exists():
        return True
    return time.time() - (response.heartbeat_at or response.created_at) > SETTLE_SECONDS


def later_responses(response: Response) -> list[Response]:
    """Responses that continue this one (directly or further down), breadth first."""
    found: list[Response] = []
    frontier = [response.id]
    seen = {response.id}
    while frontier and len(found) < MAX_CHAIN:
        rows = list(Response.objects.filter(previous_response_id__in=frontier).order_by("created_at"))
        frontier = []
        for row in rows:
            if row.id not in seen:
                seen.add(row.id)
                found.append(row)
                frontier.append(row.id)
    return found[:MAX_CHAIN]


def _turns(chain: list[Response]) -> list[dict[str, Any]]:
    """Input and output blocks of every response of ``chain``, loaded with one query."""
    rows = (
        ResponseItem.objects.filter(response_id__in=[r.id for r in chain])
        .order_by("kind", "position")
        .values_list("response_id", "kind", "data")
    )
    items: dict[str, dict[str, list[dict[str, Any]]]] = {r.id: {"input": [], "output": []} for r in chain}
    for response_id, kind, data in rows:
        items[response_id][kind].append(data)
    names: dict[str, str] = {}
    turns = []
    for row in chain:
        inputs, outputs = items[row.id]["input"], items[row.id]["output"]
        input_blocks = transcript.blocks(inputs, names)
        names.update(transcript.call_names(inputs))
        output_blocks = transcript.blocks(outputs, names)
        names.update(transcript.call_names(outputs))
        turns.append({"response": row, "input": input_blocks, "output": output_blocks})
    return turns


def _known_secrets() -> list[str]:
    try:
        from providers_app.registry import provider_configs

        return [c.api_key for c in provider_configs().values() if c.api_key]
    except Exception:  # noqa: BLE001 - a broken config must not hide the page
        return []


def transcript_context(response: Response) -> dict[str, Any]:
    """Everything the transcript page shows about ``response``."""
    ancestors = {
        r.id: r for r in Response.objects.filter(id__in=list(response.ancestor_ids or [])[-MAX_CHAIN:])
    }
    earlier = [ancestors[i] for i in response.ancestor_ids or [] if i in ancestors]
    turns = _turns(earlier + [response])
    wire = (
        transcript.pretty_json(transcript.redact(response.wire_log, _known_secrets()))
        if response.wire_log
        else ""
    )
    params = response.params or {}
    return {
        "response": response,
        "created": as_datetime(response.created_at),
        "completed": as_datetime(response.completed_at),
        "timings": transcript.timings(response),
        "usage_rows": transcript.usage_rows(response.usage),
        "error_json": transcript.pretty_json(response.error) if response.error else "",
        "incomplete_json": transcript.pretty_json(response.incomplete_details)
        if response.incomplete_details
        else "",
        "earlier": earlier,
        "later": later_responses(response),
        "turns": turns,
        "instructions": params.get("instructions") or "",
        "tools": [t.get("name") or t.get("type") for t in params.get("tools") or []],
        "wire_log": wire,
        "event_count": ResponseEvent.objects.filter(response=response).count(),
        "live": {
            "events_url": reverse("admin:responses_app_response_events_json", args=[quote(response.id)]),
            # Replay from the start: output items are stored only at the end, so the live
            # view rebuilds what was said so far from the events.
            "after": -1,
            "finished": settled(response),
        },
    }


def transcript_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    response = _get(object_id)
    if not model_admin.has_view_permission(request, response):
        raise Http404("No such response")
    context = {
        **model_admin.admin_site.each_context(request),
        **transcript_context(response),
        "opts": model_admin.model._meta,
        "title": f"Response {response.id}",
        "subtitle": None,
        "has_delete_permission": model_admin.has_delete_permission(request, response),
        "can_cancel": not response.is_finished and model_admin.has_change_permission(request, response),
        "original": response,
    }
    return TemplateResponse(request, "admin/responses_app/response/transcript.html", context)


def events_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """The event log: sequence numbers, times since creation and since the previous event, raw JSON."""
    response = _get(object_id)
    if not model_admin.has_view_permission(request, response):
        raise Http404("No such response")
    rows = []
    previous = None
    for seq, event_type, payload, created in (
        ResponseEvent.objects.filter(response=response)
        .order_by("sequence_number")
        .values_list("sequence_number", "type", "payload", "created_at")
    ):
        try:
            data = json.loads(payload)
        except ValueError:
            data = {"unparsed": payload}
        rows.append(
            {
                "sequence_number": seq,
                "type": event_type,
                "at": transcript.seconds(max(0.0, created - response.created_at)),
                "gap": transcript.seconds(max(0.0, created - previous)) if previous is not None else "",
                "summary": transcript.event_summary(event_type, data),
                "raw": transcript.pretty_json(data),
            }
        )
        previous = created
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"Events of {response.id}",
        "subtitle": None,
        "response": response,
        "original": response,
        "events": rows,
    }
    return TemplateResponse(request, "admin/responses_app/response/events.html", context)


def events_json(model_admin: Any, request: HttpRequest, object_id: str) -> JsonResponse:
    """Stored events after ``?after=N`` (for the live view), with the current status."""
    response = _get(object_id)
    if not model_admin.has_view_permission(request, response):
        raise Http404("No such response")
    try:
        after = int(request.GET.get("after", "-1"))
    except ValueError:
        after = -1
    batch = selectors.response_events_after(response_id=response.id, after=after)[:EVENTS_PAGE]
    events = []
    for seq, event_type, payload in batch:
        try:
            data = json.loads(payload)
        except ValueError:
            data = {}
        events.append({"sequence_number": seq, "type": event_type, "data": data})
    finished = any(e["type"] in TERMINAL_EVENT_TYPES for e in events) or settled(response)
    return JsonResponse(
        {"id": response.id, "status": response.status, "events": events, "finished": finished}
    )


def raw_json(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """The response resource as the API returns it (``?part=input`` for its input items)."""
    response = _get(object_id)
    if not model_admin.has_view_permission(request, response):
        raise Http404("No such response")
    if request.GET.get("part") == "input":
        rows = (
            ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.INPUT)
            .order_by("position")
            .values_list("data", flat=True)
        )
        from responses_app.resource import public_item

        data: Any = [public_item(item) for item in rows]
    else:
        data = selectors.response_resource(response=response)
    return HttpResponse(transcript.pretty_json(data), content_type="application/json; charset=utf-8")


def cancel_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    response = _get(object_id)
    if not model_admin.has_change_permission(request, response):
        raise Http404("No such response")
    cancel_response(request, response)
    return redirect(reverse("admin:responses_app_response_change", args=[quote(response.id)]))


def cancel_response(request: HttpRequest, response: Response) -> bool:
    """Cancel through the cancel flow (as the API does); tell the operator."""
    if response.is_finished:
        messages.warning(
            request, f"Response {response.id} had already finished ({response.status}); nothing to cancel."
        )
        return False
    cancelled = flows.cancel_response(response=response)
    messages.success(request, f"Response {response.id} is {cancelled.status}.")
    return True


# ---------------------------------------------------------------------------- usage and cost

USAGE_PERIODS = {
    "1": "Past 24 hours",
    "7": "Past 7 days",
    "30": "Past 30 days",
    "90": "Past 90 days",
    "365": "Past year",
}
USAGE_COLUMNS = ["responses", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "cost"]


def usage_rows(
    *, since: float, group: list[str], owner: str | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """Usage summed by ``group`` (fields of UsageRecord: key_name/owner, model, day) since ``since``."""
    from django.db.models import Count, Sum

    from responses_app.models import UsageRecord

    qs = UsageRecord.objects.filter(created_at__gte=since)
    if owner:
        qs = qs.filter(owner=owner)
    if model:
        qs = qs.filter(model=model)
    rows = (
        qs.order_by()
        .values(*group)
        .annotate(
            responses=Count("id"),
            input_tokens=Sum("input_tokens"),
            cached_tokens=Sum("cached_tokens"),
            output_tokens=Sum("output_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
            cost=Sum("cost"),
        )
        .order_by(*[("-" + g) if g == "day" else g for g in group])
    )
    return [{**row, **{c: row[c] or 0 for c in USAGE_COLUMNS}} for row in rows]


def usage_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Usage and cost per key, per model and per day; ``?export=csv`` for one row per day, key and model."""
    import csv
    import io

    period = request.GET.get("days", "30")
    if period not in USAGE_PERIODS:
        period = "30"
    since = time.time() - int(period) * 86400
    owner = request.GET.get("owner") or None
    model = request.GET.get("model") or None
    if request.GET.get("export") == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["day", "key", "owner", "model", "provider", *USAGE_COLUMNS])
        for row in usage_rows(
            since=since, group=["day", "key_name", "owner", "model", "provider"], owner=owner, model=model
        ):
            writer.writerow(
                [
                    row["day"].isoformat(),
                    row["key_name"],
                    row["owner"],
                    row["model"],
                    row["provider"],
                    *[row[c] for c in USAGE_COLUMNS],
                ]
            )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="openresponses-usage-{period}d.csv"'
        return response
    by_key = usage_rows(since=since, group=["key_name", "owner"], owner=owner, model=model)
    totals = {c: sum(row[c] for row in by_key) for c in USAGE_COLUMNS}
    query = request.GET.copy()
    query["export"] = "csv"
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Usage and cost",
        "subtitle": None,
        "periods": USAGE_PERIODS.items(),
        "period": period,
        "owner": owner or "",
        "model": model or "",
        "by_key": by_key,
        "by_model": usage_rows(since=since, group=["model", "provider"], owner=owner, model=model),
        "by_day": usage_rows(since=since, group=["day"], owner=owner, model=model),
        "totals": totals,
        "csv_query": query.urlencode(),
        "cl": None,
    }
    return TemplateResponse(request, "admin/responses_app/usagerecord/usage.html", context)
