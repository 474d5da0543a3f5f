"""Reads: stored responses, their items and events (owner-scoped)."""

from __future__ import annotations

from typing import Any

from responses_app.errors import ApiError, not_found
from responses_app.models import Response, ResponseEvent, ResponseItem
from responses_app.resource import build_resource, public_item


def response_get(*, response_id: str, owner: str | None) -> Response:
    """A stored response visible to ``owner`` (None: no isolation), else 404."""
    qs = Response.objects.filter(id=response_id, store=True)
    if owner is not None:
        qs = qs.filter(owner=owner)
    response = qs.first()
    if response is None:
        raise not_found(f"Response with id '{response_id}' not found.", "response_id")
    return response


def previous_response_get(
    *,
    response_id: str,
    owner: str | None,
    unstored_ids: frozenset[str] | set[str] = frozenset(),
    fields: tuple[str, ...] = (),
) -> Response:
    """The response a request continues (``previous_response_id``), else a 404 naming that param.

    ``unstored_ids``: ``store: false`` responses the caller may continue (a WebSocket connection's own).
    """
    qs = Response.objects.filter(id=response_id)
    if response_id not in unstored_ids:
        qs = qs.filter(store=True)
    if owner is not None:
        qs = qs.filter(owner=owner)
    previous = (qs.only(*fields) if fields else qs).first()
    if previous is None:
        raise ApiError(
            404,
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return previous


def input_with_references(
    *, items: list[dict[str, Any]], references: list[tuple[int, str]], owner: str | None
) -> list[dict[str, Any]]:
    """``items`` with each ``item_reference`` (index, id) replaced by the stored item it names."""
    if not references:
        return items
    items = list(items)
    for index, ref in references:
        qs = ResponseItem.objects.filter(item_id=ref, response__store=True)
        if owner is not None:
            qs = qs.filter(response__owner=owner)
        row = qs.first()
        if row is None:
            raise ApiError(
                404, f"Item with id '{ref}' not found.", param=f"input[{index}].id", code="item_not_found"
            )
        items[index] = row.data
    return items


def response_output_items(*, response: Response) -> list[dict[str, Any]]:
    return [
        row.data
        for row in ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.OUTPUT).order_by(
            "position"
        )
    ]


def response_resource(*, response: Response) -> dict[str, Any]:
    return build_resource(response, response_output_items(response=response))


def response_events_after(*, response_id: str, after: int) -> list[tuple[int, str, str]]:
    return list(
        ResponseEvent.objects.filter(response_id=response_id, sequence_number__gt=after)
        .order_by("sequence_number")
        .values_list("sequence_number", "type", "payload")
    )


def response_status(*, response_id: str) -> str | None:
    return Response.objects.filter(id=response_id).values_list("status", flat=True).first()


def response_context_items(*, response: Response) -> list[dict[str, Any]]:
    """What the model sees: every earlier response's input and output, oldest first, then this input."""
    ids = list(response.ancestor_ids or []) + [response.id]
    rows = ResponseItem.objects.filter(response_id__in=ids).values_list(
        "response_id", "kind", "position", "data"
    )
    order = {rid: i for i, rid in enumerate(ids)}
    own_output = []
    context = []
    for rid, kind, _position, data in sorted(rows, key=lambda r: (order[r[0]], r[1] != "input", r[2])):
        if rid == response.id and kind == "output":
            own_output.append(data)
        else:
            context.append(data)
    return context + own_output


def response_input_items_page(
    *, response: Response, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    rows = list(
        ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.INPUT)
        .order_by("position")
        .values_list("item_id", "data")
    )
    if order == "desc":
        rows.reverse()
    if after:
        ids = [item_id for item_id, _ in rows]
        if after not in ids:
            raise ApiError(
                400, f"Invalid 'after': no input item with id '{after}'.", param="after", code="invalid_value"
            )
        rows = rows[ids.index(after) + 1 :]
    page = rows[:limit]
    data = [public_item(item) for _, item in page]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }
