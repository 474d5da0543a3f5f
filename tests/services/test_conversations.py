"""Conversation services in process: context snapshots, appending a finished turn, ownership."""

from __future__ import annotations

import pytest

from providers_app.registry import Route
from responses_app import selectors
from responses_app.errors import ApiError
from responses_app.models import ConversationItem
from responses_app.services import conversations
from responses_app.services.responses import response_create, response_finish
from responses_app.states import ResponseStatus
from responses_app.types import CreateRequest

pytestmark = pytest.mark.django_db(transaction=True)
ROUTE = Route(provider="mock", upstream_model="mock-1", pattern="mock-*", source="default")


def message(role: str, text: str, item_id: str) -> dict:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "id": item_id, "role": role, "content": [{"type": part, "text": text}]}


def texts(items: list[dict]) -> list[str]:
    return [part["text"] for item in items for part in item.get("content", [])]


def turn(conversation_id: str | None, text: str, *, owner: str = "key:alice", previous: str | None = None):
    request = CreateRequest(
        model="mock-1",
        params={},
        input_items=[message("user", text, f"msg_in_{text}")],
        conversation_id=conversation_id,
        previous_response_id=previous,
    )
    return response_create(request=request, owner=owner, route=ROUTE)


def finish(response, text: str, status: str = ResponseStatus.COMPLETED) -> str:
    return response_finish(
        response_id=response.id,
        status=status,
        output=[message("assistant", text, f"msg_out_{text}")],
        usage=None,
    )


def test_context_is_the_conversation_as_it_was_when_the_response_was_created():
    conv = conversations.conversation_create(owner="key:alice", items=[message("user", "zero", "msg_0")])
    first = turn(conv.id, "one")
    conversations.conversation_items_add(conversation=conv, items=[message("user", "later", "msg_later")])
    assert texts(selectors.response_context_items(response=first)) == ["zero", "one"]
    finish(first, "answer one")
    stored = ConversationItem.objects.filter(conversation=conv).order_by("position")
    assert texts([row.data for row in stored]) == ["zero", "later", "one", "answer one"]
    assert [row.position for row in stored] == [0, 1, 2, 3]
    assert {row.response_id for row in stored[2:]} == {first.id}
    second = turn(conv.id, "two")
    assert texts(selectors.response_context_items(response=second)) == [
        "zero",
        "later",
        "one",
        "answer one",
        "two",
    ]


def test_failed_and_cancelled_turns_are_not_appended_and_a_second_finish_appends_nothing():
    conv = conversations.conversation_create(owner="key:alice")
    failed = turn(conv.id, "bad")
    assert finish(failed, "partial", ResponseStatus.FAILED) == ResponseStatus.FAILED
    cancelled = turn(conv.id, "stop")
    finish(cancelled, "partial", ResponseStatus.CANCELLED)
    assert not ConversationItem.objects.filter(conversation=conv).exists()
    done = turn(conv.id, "ok")
    finish(done, "fine")
    finish(done, "fine again")  # (the reaper and the loop both finishing)
    assert texts([r.data for r in ConversationItem.objects.filter(conversation=conv)]) == ["ok", "fine"]


def test_a_chain_continued_with_previous_response_id_keeps_the_conversation_context():
    conv = conversations.conversation_create(
        owner="key:alice", items=[message("developer", "rules", "msg_r")]
    )
    first = turn(conv.id, "one")
    finish(first, "answer")
    follow = turn(None, "two", previous=first.id)
    assert texts(selectors.response_context_items(response=follow)) == ["rules", "one", "answer", "two"]
    finish(follow, "answer two")
    # Only responses created with the conversation join it.
    assert ConversationItem.objects.filter(conversation=conv).count() == 3


def test_a_conversation_deleted_while_a_turn_runs():
    conv = conversations.conversation_create(owner="key:alice")
    running, conv_id = turn(conv.id, "one"), conv.id
    conversations.conversation_delete(conversation=conv)
    # The loop's own copy still names the deleted conversation.
    status = response_finish(
        response_id=running.id,
        status=ResponseStatus.COMPLETED,
        output=[message("assistant", "answer", "msg_a")],
        usage=None,
        response=running,
    )
    assert status == ResponseStatus.COMPLETED and running.conversation_id == conv_id
    running.refresh_from_db()
    assert running.conversation_id is None
    assert selectors.response_context_items(response=running)[0]["id"] == "msg_in_one"


def test_owner_and_exclusivity_checks_in_the_service():
    conv = conversations.conversation_create(owner="key:alice")
    with pytest.raises(ApiError) as caught:
        turn(conv.id, "x", owner="key:bob")
    assert (caught.value.status, caught.value.param) == (404, "conversation")
    with pytest.raises(ApiError) as caught:
        selectors.conversation_get(conversation_id=conv.id, owner="key:bob")
    assert (caught.value.status, caught.value.param) == (404, "conversation_id")
    assert selectors.conversation_get(conversation_id=conv.id, owner=None) == conv
    first = turn(None, "first")
    with pytest.raises(ApiError) as caught:
        turn(conv.id, "x", previous=first.id)
    assert (caught.value.status, caught.value.param) == (400, "conversation")


def test_public_items_hide_private_fields_and_unrequested_encrypted_reasoning():
    item = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "encrypted_content": "sealed",
        "_meta": {"x": 1},
    }
    assert selectors.conversation_public_item(item) == {"type": "reasoning", "id": "rs_1", "summary": []}
    assert (
        selectors.conversation_public_item(item, {"reasoning.encrypted_content"})["encrypted_content"]
        == "sealed"
    )
    assert (
        selectors.conversation_public_item({"type": "message", "id": "m", "role": "user", "content": []})[
            "status"
        ]
        == "completed"
    )


def test_retention_applies_to_conversation_items_and_a_key_purge_takes_its_conversations(settings):
    from responses_app.gateway.retention import purge_expired, purge_owner
    from responses_app.models import Conversation

    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "RETENTION_DAYS": 30}
    old = conversations.conversation_create(owner="key:alice", items=[message("user", "old", "msg_old")])
    kept = conversations.conversation_create(owner="key:alice", items=[message("user", "a", "msg_a")])
    conversations.conversation_items_add(conversation=kept, items=[message("user", "b", "msg_b")])
    month = 31 * 86400
    Conversation.objects.filter(id=old.id).update(created_at=old.created_at - month)
    ConversationItem.objects.filter(item_id__in=["msg_old", "msg_a"]).update(
        created_at=old.created_at - month
    )
    assert purge_expired(dry_run=True).conversation_items == 2
    assert ConversationItem.objects.count() == 3
    report = purge_expired()
    assert (report.conversation_items, report.conversations) == (2, 1)
    assert list(Conversation.objects.values_list("id", flat=True)) == [kept.id]  # young, not empty
    assert texts([r.data for r in ConversationItem.objects.all()]) == ["b"]

    bobs = conversations.conversation_create(owner="key:bob", items=[message("user", "bob", "msg_bob")])
    report = purge_owner(owners=["key:alice"])
    assert (report.conversations, report.conversation_items) == (1, 1)
    assert list(Conversation.objects.values_list("id", flat=True)) == [bobs.id]
    assert texts([r.data for r in ConversationItem.objects.all()]) == ["bob"]
