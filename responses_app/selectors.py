"""Reads: stored responses, their items and events; conversations and their items (owner-scoped)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from responses_app.errors import ApiError, not_found
from responses_app.models import Conversation, ConversationItem, Response, ResponseEvent, ResponseItem
from responses_app.resource import build_resource, public_item

#: Item types whose public form carries a ``status`` (OpenAI's conversation items always do).
STATUS_ITEM_TYPES = {"message", "function_call", "function_call_output"}


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
    *, items: list[dict[str, Any]], references: list[tuple[int, str]], owner: str | None, param: str = "input"
) -> list[dict[str, Any]]:
    """``items`` with each ``item_reference`` (index, id) replaced by the stored item it names
    (an item of a stored response or of a conversation of ``owner``), else a 404 naming it."""
    if not references:
        return items
    items = list(items)
    for index, ref in references:
        data = stored_item_data(item_id=ref, owner=owner)
        if data is None:
            raise ApiError(
                404, f"Item with id '{ref}' not found.", param=f"{param}[{index}].id", code="item_not_found"
            )
        items[index] = data
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


def response_events_after(
    *, response_id: str, after: int, limit: int | None = None, max_chars: int | None = None
) -> list[tuple[int, str, str]]:
    """Stored events with ``sequence_number > after``, in order: at most ``limit`` of them, and
    (with ``max_chars``) no more than fit in that many payload characters (always at least one)."""
    rows = ResponseEvent.objects.filter(response_id=response_id, sequence_number__gt=after).order_by(
        "sequence_number"
    )
    if max_chars is not None:
        from django.db.models.functions import Length

        sizes = rows.annotate(chars=Length("payload")).values_list("sequence_number", "chars")
        last, total = None, 0
        for number, chars in sizes if limit is None else sizes[:limit]:
            if last is not None and total + (chars or 0) > max_chars:
                break
            last, total = number, total + (chars or 0)
        if last is None:
            return []
        rows = rows.filter(sequence_number__lte=last)
        limit = None
    values = rows.values_list("sequence_number", "type", "payload")
    return list(values if limit is None else values[:limit])


def response_status(*, response_id: str) -> str | None:
    return Response.objects.filter(id=response_id).values_list("status", flat=True).first()


def response_context_items(*, response: Response) -> list[dict[str, Any]]:
    """What the model sees: the conversation's items as they were when the chain began (if it
    began in a conversation), every earlier response's input and output, oldest first, then this input.

    Items of a step interrupted by a lost worker (``_meta.abandoned``: kept in the output the
    client saw, superseded by the step's retry) are left out.
    """
    ids = list(response.ancestor_ids or []) + [response.id]
    root = response if not response.ancestor_ids else None
    if root is None:
        root = Response.objects.filter(id=ids[0]).only("conversation_id", "conversation_position").first()
    prefix = conversation_context_items(response=root) if root is not None else []
    rows = ResponseItem.objects.filter(response_id__in=ids).values_list(
        "response_id", "kind", "position", "data"
    )
    return prefix + context_from_rows(response_id=response.id, ids=ids, rows=rows)


def context_from_rows(
    *, response_id: str, ids: list[str], rows: Collection[tuple[str, str, int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The chain's items in the model's order, from rows ``(response_id, kind, position, data)`` of
    the responses ``ids`` (oldest first, ending with ``response_id``): see :func:`response_context_items`."""
    order = {rid: i for i, rid in enumerate(ids)}
    own_output = []
    context = []
    for rid, kind, _position, data in sorted(rows, key=lambda r: (order[r[0]], r[1] != "input", r[2])):
        if (data.get("_meta") or {}).get("abandoned"):
            continue
        if rid == response_id and kind == "output":
            own_output.append(data)
        else:
            context.append(data)
    return context + own_output


def conversation_context_items(*, response: Response) -> list[dict[str, Any]]:
    """The items of ``response``'s conversation that came before it (none without a conversation)."""
    if not response.conversation_id or response.conversation_position is None:
        return []
    return list(
        ConversationItem.objects.filter(
            conversation_id=response.conversation_id, position__lt=response.conversation_position
        )
        .order_by("position")
        .values_list("data", flat=True)
    )


def conversation_get(*, conversation_id: str, owner: str | None) -> Conversation:
    """A conversation visible to ``owner`` (None: no isolation), else 404 naming ``conversation_id``."""
    qs = Conversation.objects.filter(id=conversation_id)
    if owner is not None:
        qs = qs.filter(owner=owner)
    conversation = qs.first()
    if conversation is None:
        raise not_found(f"Conversation with id '{conversation_id}' not found.", "conversation_id")
    return conversation


def conversation_resource(*, conversation: Conversation) -> dict[str, Any]:
    """The ``Conversation`` object of the API."""
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": int(conversation.created_at),
        "metadata": conversation.metadata or {},
    }


def conversation_public_item(item: dict[str, Any], include: Collection[str] = ()) -> dict[str, Any]:
    """A stored conversation item as the API shows it: no ``_meta``, a ``status`` where OpenAI has
    one, a reasoning item's ``encrypted_content`` only when ``include`` asks for it."""
    item = public_item(item)
    if item.get("type") in STATUS_ITEM_TYPES and not item.get("status"):
        item = {**item, "status": "completed"}
    if "encrypted_content" in item and item.get("type") == "reasoning":
        if "reasoning.encrypted_content" not in include:
            item = {k: v for k, v in item.items() if k != "encrypted_content"}
    return item


def conversation_item_get(
    *, conversation: Conversation, item_id: str, include: Collection[str] = ()
) -> dict[str, Any]:
    """One item of the conversation (its public form), else 404 naming ``item_id``."""
    data = (
        ConversationItem.objects.filter(conversation=conversation, item_id=item_id)
        .order_by("position")
        .values_list("data", flat=True)
        .first()
    )
    if data is None:
        raise not_found(f"Item with id '{item_id}' not found in conversation '{conversation.id}'.", "item_id")
    return conversation_public_item(data, include)


def conversation_items_page(
    *, conversation: Conversation, after: str | None, limit: int, order: str, include: Collection[str] = ()
) -> dict[str, Any]:
    """A page of the conversation's items, ``order`` by position, after the item ``after``."""
    qs = ConversationItem.objects.filter(conversation=conversation)
    if after:
        anchor = qs.filter(item_id=after).values_list("position", flat=True).first()
        if anchor is None:
            raise ApiError(
                400,
                f"Invalid 'after': no item with id '{after}' in this conversation.",
                param="after",
                code="invalid_value",
            )
        qs = qs.filter(position__gt=anchor) if order == "asc" else qs.filter(position__lt=anchor)
    qs = qs.order_by("position" if order == "asc" else "-position")
    rows = list(qs.values_list("data", flat=True)[: limit + 1])
    data = [conversation_public_item(item, include) for item in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


def conversation_call_ids(*, conversation_id: str, before: int | None = None) -> set[str]:
    """``call_id`` of every function call in the conversation (before position ``before``)."""
    qs = ConversationItem.objects.filter(conversation_id=conversation_id, item_type="function_call")
    if before is not None:
        qs = qs.filter(position__lt=before)
    return set(qs.values_list("data__call_id", flat=True))


def stored_item_data(*, item_id: str, owner: str | None) -> dict[str, Any] | None:
    """An item referenced by id (``item_reference``): from a stored response, else from a conversation."""
    qs = ResponseItem.objects.filter(item_id=item_id, response__store=True)
    if owner is not None:
        qs = qs.filter(response__owner=owner)
    data = qs.values_list("data", flat=True).first()
    if data is not None:
        return data
    conv = ConversationItem.objects.filter(item_id=item_id)
    if owner is not None:
        conv = conv.filter(conversation__owner=owner)
    return conv.values_list("data", flat=True).first()


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
