"""The Conversations API and the ``conversation`` parameter, through the official ``openai`` SDK
against the running server; every JSON answer validated against the SDK's own types."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItemList,
    Message,
)
from pydantic import TypeAdapter

from tests.support.api import create, output_text
from tests.support.wire import AnthropicWire

ITEM = TypeAdapter(openai.types.conversations.ConversationItem)


def _texts(items) -> list[tuple[str, str]]:
    """(role, text) of the message items."""
    return [
        (i.role, "".join(getattr(p, "text", "") for p in i.content)) for i in items if i.type == "message"
    ]


def test_create_retrieve_update_delete_with_the_sdk(openai_client, http):
    conv = openai_client.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "Hello there"}],
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "demo"}

    raw = http.get(f"/v1/conversations/{conv.id}")
    assert raw.status_code == 200
    assert Conversation.model_validate(raw.json()).id == conv.id
    assert set(raw.json()) == {"id", "object", "created_at", "metadata"}

    updated = openai_client.conversations.update(conv.id, metadata={"topic": "changed", "n": "2"})
    assert updated.metadata == {"topic": "changed", "n": "2"}
    assert openai_client.conversations.retrieve(conv.id).metadata == {"topic": "changed", "n": "2"}

    deleted = openai_client.conversations.delete(conv.id)
    assert deleted.deleted is True and deleted.id == conv.id
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.conversations.retrieve(conv.id)
    assert caught.value.body["param"] == "conversation_id"
    again = http.delete(f"/v1/conversations/{conv.id}")
    assert again.status_code == 404


def test_items_add_list_paginate_retrieve_delete(openai_client, http):
    conv = openai_client.conversations.create(
        items=[{"type": "message", "role": "user", "content": f"first {i}"} for i in range(2)]
    )
    added = openai_client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "assistant", "content": "an answer"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "last"}]},
        ],
    )
    assert [m.role for m in added.data] == ["assistant", "user"]
    assert added.first_id == added.data[0].id and added.last_id == added.data[-1].id

    # Raw JSON, validated against the SDK's types (the list and each item).
    raw = http.get(f"/v1/conversations/{conv.id}/items", params={"order": "asc"}).json()
    ConversationItemList.model_validate(raw)
    for item in raw["data"]:
        assert isinstance(ITEM.validate_python(item), Message)
        assert item["status"] == "completed"
    assert [i["content"][0]["text"] for i in raw["data"]] == ["first 0", "first 1", "an answer", "last"]
    assert raw["has_more"] is False

    # Default order is desc; pages of one follow last_id through the SDK's auto-pagination.
    page = openai_client.conversations.items.list(conv.id, limit=1)
    assert page.has_more is True and len(page.data) == 1
    assert _texts(page.data) == [("user", "last")]
    everything = list(openai_client.conversations.items.list(conv.id, limit=1, order="asc"))
    assert _texts(everything) == [
        ("user", "first 0"),
        ("user", "first 1"),
        ("assistant", "an answer"),
        ("user", "last"),
    ]
    after = openai_client.conversations.items.list(conv.id, after=everything[1].id, order="asc", limit=10)
    assert _texts(after.data) == [("assistant", "an answer"), ("user", "last")]
    before = openai_client.conversations.items.list(conv.id, after=everything[1].id, order="desc")
    assert _texts(before.data) == [("user", "first 0")]

    one = openai_client.conversations.items.retrieve(everything[2].id, conversation_id=conv.id)
    assert one.id == everything[2].id and one.type == "message" and one.role == "assistant"

    result = openai_client.conversations.items.delete(everything[2].id, conversation_id=conv.id)
    assert result.id == conv.id and result.object == "conversation"
    assert [i.id for i in openai_client.conversations.items.list(conv.id, order="asc")] == [
        everything[0].id,
        everything[1].id,
        everything[3].id,
    ]
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.conversations.items.retrieve(everything[2].id, conversation_id=conv.id)
    assert caught.value.body["param"] == "item_id"
    with pytest.raises(openai.NotFoundError):
        openai_client.conversations.items.delete(everything[2].id, conversation_id=conv.id)


def test_deleted_resource_shape(http):
    conv = http.post("/v1/conversations", json={}).json()
    assert Conversation.model_validate(conv).metadata == {}
    raw = http.delete(f"/v1/conversations/{conv['id']}").json()
    assert ConversationDeletedResource.model_validate(raw).deleted is True


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "param"),
    [
        ("post", "", {"metadata": {"k": 1}}, None, "metadata.k"),
        ("post", "", {"metadata": {f"k{i}": "v" for i in range(17)}}, None, "metadata"),
        ("post", "", {"items": "hello"}, None, "items"),
        ("post", "", {"items": [{"type": "message", "role": "user", "content": "x"}] * 21}, None, "items"),
        ("post", "", {"items": [{"type": "nonsense"}]}, None, "items[0].type"),
        ("post", "", {"surprise": True}, None, "surprise"),
        ("post", "/{id}", {}, None, "metadata"),
        ("post", "/{id}/items", {}, None, "items"),
        ("post", "/{id}/items", {"items": []}, None, "items"),
        (
            "post",
            "/{id}/items",
            {"items": [{"type": "message", "role": "wizard", "content": "x"}]},
            None,
            "items[0].role",
        ),
        ("get", "/{id}/items", None, {"limit": "0"}, "limit"),
        ("get", "/{id}/items", None, {"limit": "many"}, "limit"),
        ("get", "/{id}/items", None, {"order": "sideways"}, "order"),
        ("get", "/{id}/items", None, {"after": "msg_nope"}, "after"),
        ("get", "/{id}/items", None, {"include[]": "everything"}, "include[0]"),
    ],
)
def test_bad_input_is_a_400_naming_the_param(http, method, path, body, params, param):
    conv = http.post("/v1/conversations", json={}).json()
    url = "/v1/conversations" + path.format(id=conv["id"])
    response = http.request(method.upper(), url, json=body, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_item_reference_in_added_items(http):
    first = create(http, {"model": "mock-1", "input": "remember me"})
    ref = first["output"][0]["id"]
    conv = http.post("/v1/conversations", json={"items": [{"type": "item_reference", "id": ref}]}).json()
    items = http.get(f"/v1/conversations/{conv['id']}/items").json()["data"]
    assert [i["id"] for i in items] == [ref] and items[0]["role"] == "assistant"
    missing = http.post(f"/v1/conversations/{conv['id']}/items", json={"items": [{"id": "msg_missing"}]})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "items[0].id"


def test_responses_with_a_conversation_see_its_items_and_append_their_turn(openai_client, http):
    conv = openai_client.conversations.create(
        items=[{"type": "message", "role": "developer", "content": "Be brief."}]
    )
    first = openai_client.responses.create(model="mock-1", input="alpha", conversation=conv.id)
    assert first.conversation is not None and first.conversation.id == conv.id
    second = openai_client.responses.create(model="mock-1", input="beta", conversation={"id": conv.id})
    # The mock numbers user turns: the second turn saw the first one as context.
    assert second.output_text == "(turn 2) You said: beta"
    items = list(openai_client.conversations.items.list(conv.id, order="asc"))
    assert _texts(items) == [
        ("developer", "Be brief."),
        ("user", "alpha"),
        ("assistant", "You said: alpha"),
        ("user", "beta"),
        ("assistant", "(turn 2) You said: beta"),
    ]
    # Items added by hand count as context too; no input is needed then.
    openai_client.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": "gamma"}]
    )
    third = openai_client.responses.create(model="mock-1", conversation=conv.id)
    assert third.output_text == "(turn 3) You said: gamma"
    # The stored response echoes its conversation.
    raw = http.get(f"/v1/responses/{third.id}").json()
    assert raw["conversation"] == {"id": conv.id}


def test_tool_round_trip_inside_a_conversation(openai_client):
    conv = openai_client.conversations.create()
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    call = openai_client.responses.create(
        model="mock-1", input="look it up", tools=tools, conversation=conv.id
    )
    fc = next(i for i in call.output if i.type == "function_call")
    answer = openai_client.responses.create(
        model="mock-1",
        tools=tools,
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "42"}],
    )
    assert answer.output_text == "The tool returned: 42"
    types = [i.type for i in openai_client.conversations.items.list(conv.id, order="asc")]
    assert types == ["message", "function_call", "function_call_output", "message"]
    # A call id the conversation never produced is still refused.
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="mock-1",
            conversation=conv.id,
            input=[{"type": "function_call_output", "call_id": "call_unknown", "output": "x"}],
        )
    assert caught.value.body["param"] == "input[0].call_id"


def test_conversation_errors_on_create(openai_client, http):
    conv = openai_client.conversations.create()
    first = openai_client.responses.create(model="mock-1", input="hi")
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="mock-1", input="x", conversation=conv.id, previous_response_id=first.id
        )
    assert caught.value.body["param"] == "conversation"
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.create(model="mock-1", input="x", conversation="conv_missing")
    assert caught.value.body["param"] == "conversation"
    for bad, param in [
        (5, "conversation"),
        ({"id": 5}, "conversation.id"),
        ({"id": "c", "x": 1}, "conversation.x"),
    ]:
        response = http.post("/v1/responses", json={"model": "mock-1", "input": "x", "conversation": bad})
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    # A failed turn is not added to the conversation.
    with pytest.raises(openai.APIStatusError):
        openai_client.responses.create(model="mock-fail", input="boom", conversation=conv.id)
    assert list(openai_client.conversations.items.list(conv.id)) == []


def test_second_turn_on_another_provider_carries_the_first_turn(openai_client, upstream):
    """Turn one on the built-in mock, turn two on Anthropic (a fake upstream on loopback): the
    upstream request of turn two holds turn one's messages, taken from the conversation."""
    conv = openai_client.conversations.create()
    first = openai_client.responses.create(
        model="mock-1", input="The password is swordfish.", conversation=conv.id
    )
    assert first.output_text == "You said: The password is swordfish."
    upstream.queue(AnthropicWire().text("It is swordfish.", stream=False))
    second = openai_client.responses.create(
        model="claude-sonnet-4-5", input="What is the password?", conversation={"id": conv.id}
    )
    assert second.output_text == "It is swordfish." and second.conversation.id == conv.id
    sent = upstream.requests[-1]
    assert sent.path == "/v1/messages"
    assert AnthropicWire().texts(sent.json()) == [
        "The password is swordfish.",
        "You said: The password is swordfish.",
        "What is the password?",
    ]
    items = list(openai_client.conversations.items.list(conv.id, order="asc"))
    assert _texts(items)[-1] == ("assistant", "It is swordfish.")
    assert len(items) == 4


def test_conversations_are_owned_by_the_key(keyed_server):
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        mine = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="sk-client-one", max_retries=0)
        theirs = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="sk-client-two", max_retries=0)
        conv = mine.conversations.create(items=[{"type": "message", "role": "user", "content": "secret"}])
        item_id = next(iter(mine.conversations.items.list(conv.id))).id
        assert mine.conversations.retrieve(conv.id).id == conv.id
        for call in (
            lambda: theirs.conversations.retrieve(conv.id),
            lambda: theirs.conversations.update(conv.id, metadata={"x": "y"}),
            lambda: theirs.conversations.items.list(conv.id),
            lambda: theirs.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
            lambda: theirs.conversations.items.retrieve(item_id, conversation_id=conv.id),
            lambda: theirs.conversations.items.delete(item_id, conversation_id=conv.id),
            lambda: theirs.conversations.delete(conv.id),
            lambda: theirs.responses.create(model="mock-1", input="x", conversation=conv.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
        # Another key cannot reference the conversation's items either.
        response = client.post(
            "/v1/responses",
            json={"model": "mock-1", "input": [{"type": "item_reference", "id": item_id}]},
            headers=auth("sk-client-two"),
        )
        assert response.status_code == 404
        # Nothing changed for the owner.
        assert _texts(mine.conversations.items.list(conv.id)) == [("user", "secret")]
        assert mine.conversations.retrieve(conv.id).metadata == {}
        assert (
            output_text(
                client.post(
                    "/v1/responses",
                    json={"model": "mock-1", "input": "again", "conversation": conv.id},
                    headers=auth("sk-client-one"),
                ).json()
            )
            == "(turn 2) You said: again"
        )


def test_streamed_and_background_turns_join_the_conversation(openai_client):
    conv = openai_client.conversations.create()
    with openai_client.responses.stream(model="mock-1", input="streamed", conversation=conv.id) as events:
        created = next(e for e in events if e.type == "response.created")
        assert created.response.conversation.id == conv.id
        final = events.get_final_response()
    assert final.output_text == "You said: streamed" and final.conversation.id == conv.id
    job = openai_client.responses.create(
        model="mock-1", input="queued", conversation=conv.id, background=True
    )
    assert job.conversation.id == conv.id
    deadline = time.monotonic() + 20
    while openai_client.responses.retrieve(job.id).status in {"queued", "in_progress"}:
        assert time.monotonic() < deadline, "the background turn never finished"
        time.sleep(0.05)
    assert _texts(openai_client.conversations.items.list(conv.id, order="asc")) == [
        ("user", "streamed"),
        ("assistant", "You said: streamed"),
        ("user", "queued"),
        ("assistant", "(turn 2) You said: queued"),
    ]


def test_websocket_turns_use_the_conversation_too(server, openai_client):
    from tests.ws.client import WsClient, assert_valid_turn

    conv = openai_client.conversations.create()
    with WsClient(server.url) as ws:
        first = assert_valid_turn(
            ws.turn({"model": "mock-1", "input": "over the socket", "conversation": conv.id})
        )
        second = assert_valid_turn(
            ws.turn({"model": "mock-1", "input": "again", "conversation": {"id": conv.id}, "store": False})
        )
    assert first["conversation"] == {"id": conv.id}
    assert output_text(second) == "(turn 2) You said: again"
    assert [t for _, t in _texts(openai_client.conversations.items.list(conv.id, order="asc"))] == [
        "over the socket",
        "You said: over the socket",
        "again",
        "(turn 2) You said: again",
    ]


def test_every_appended_item_validates_against_the_sdk_types(openai_client, http):
    conv = openai_client.conversations.create()
    openai_client.responses.create(
        model="mock-reasoning",
        input="think first",
        conversation=conv.id,
        include=["reasoning.encrypted_content"],
    )
    raw = http.get(
        f"/v1/conversations/{conv.id}/items",
        params={"order": "asc", "include[]": "reasoning.encrypted_content"},
    ).json()
    ConversationItemList.model_validate(raw)
    kinds = [type(ITEM.validate_python(item)).__name__ for item in raw["data"]]
    assert kinds == ["Message", "ResponseReasoningItem", "Message"]
    for item in raw["data"]:
        assert "_meta" not in item
    listed = openai_client.conversations.items.list(conv.id, include=["reasoning.encrypted_content"])
    assert [i.type for i in listed] == ["message", "reasoning", "message"]
