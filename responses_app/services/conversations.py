"""Writes: conversations and their items. The API views and the response finish path call these."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction

from responses_app.ids import conversation_id as new_conversation_id
from responses_app.models import Conversation, ConversationItem, Response, ResponseItem
from responses_app.states import ResponseStatus

#: A finished response adds its input and output to its conversation only when it ended with these.
APPENDED_STATUSES = {ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE}


def conversation_create(
    *, owner: str | None, metadata: dict[str, str] | None = None, items: list[dict[str, Any]] = ()
) -> Conversation:
    """Store a new conversation with its first ``items`` (canonical input items)."""
    with transaction.atomic():
        conversation = Conversation.objects.create(
            id=new_conversation_id(), owner=owner or "", metadata=metadata or {}, created_at=time.time()
        )
        if items:
            _append(conversation, list(items))
    return conversation


def conversation_update(*, conversation: Conversation, metadata: dict[str, str] | None) -> Conversation:
    """Replace the conversation's metadata."""
    conversation.metadata = metadata or {}
    conversation.save(update_fields=["metadata"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its items (its responses stay, no longer attached to it)."""
    conversation.delete()


def conversation_items_add(
    *, conversation: Conversation, items: list[dict[str, Any]], response_id: str = ""
) -> list[dict[str, Any]]:
    """Append ``items`` at the end of the conversation, in order; the items as stored."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(id=conversation.id)
        _append(locked, items, response_id=response_id)
    return items


def conversation_item_delete(*, conversation: Conversation, item_id: str) -> int:
    """Delete the item(s) with this id from the conversation; how many were deleted."""
    deleted, _ = ConversationItem.objects.filter(conversation=conversation, item_id=item_id).delete()
    return deleted


def conversation_append_response(*, response: Response, output: list[dict[str, Any]]) -> None:
    """After a response finished: its input items, then its output items, join its conversation.

    Called inside the finish transaction. A conversation deleted meanwhile is left alone.
    """
    if not response.conversation_id or response.status not in APPENDED_STATUSES:
        return
    locked = Conversation.objects.select_for_update().filter(id=response.conversation_id).first()
    if locked is None:
        return
    inputs = list(
        ResponseItem.objects.filter(response_id=response.id, kind=ResponseItem.Kind.INPUT)
        .order_by("position")
        .values_list("data", flat=True)
    )
    _append(locked, inputs + list(output), response_id=response.id)


def _append(conversation: Conversation, items: list[dict[str, Any]], *, response_id: str = "") -> None:
    """Store ``items`` after the conversation's last position (the caller holds its row)."""
    if not items:
        return
    start = conversation.next_position
    now = time.time()
    ConversationItem.objects.bulk_create(
        [
            ConversationItem(
                conversation=conversation,
                position=start + i,
                item_id=item.get("id") or "",
                item_type=item.get("type", ""),
                data=item,
                response_id=response_id,
                created_at=now,
            )
            for i, item in enumerate(items)
        ]
    )
    conversation.next_position = start + len(items)
    Conversation.objects.filter(id=conversation.id).update(next_position=conversation.next_position)
