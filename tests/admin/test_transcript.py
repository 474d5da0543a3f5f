"""The transcript helpers on plain dicts: no database, no network."""

from __future__ import annotations

import json
from types import SimpleNamespace

from responses_app.admin import transcript


def test_message_block_joins_text_parts_and_lists_attachments():
    block = transcript.item_block(
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://example.com/cat.png"},
            ],
        }
    )
    assert (block.kind, block.role, block.texts) == ("message", "user", ["Look:"])
    assert block.attachments == ["image: https://example.com/cat.png"]
    assert "or-role-user" in block.css


def test_refusal_and_string_content():
    assert (
        transcript.item_block(
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}
        ).refusal
        == "No."
    )
    assert transcript.item_block({"role": "system", "content": "Be brief."}).texts == ["Be brief."]


def test_function_call_and_its_output_are_named_and_pretty():
    items = [
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "_meta": {"provider": "x"},
        },
        {"type": "function_call_output", "call_id": "c1", "output": '{"temperature": 21}'},
    ]
    call, output = transcript.blocks(items)
    assert call.kind == "function_call" and call.name == "get_weather"
    assert call.arguments == json.dumps({"city": "Paris"}, indent=2)
    assert "_meta" not in call.raw
    assert output.kind == "function_call_output" and output.name == "get_weather"
    assert json.loads(output.output) == {"temperature": 21}


def test_output_names_come_from_earlier_turns():
    (output,) = transcript.blocks(
        [{"type": "function_call_output", "call_id": "c9", "output": [{"type": "input_text", "text": "ok"}]}],
        {"c9": "lookup"},
    )
    assert (output.name, output.output) == ("lookup", "ok")


def test_invalid_arguments_shown_as_sent():
    assert transcript.pretty_arguments("{not json") == "{not json"
    assert transcript.pretty_arguments("") == "{}"


def test_reasoning_summary_and_encrypted_marker():
    block = transcript.item_block(
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Think."}],
            "encrypted_content": "xyz",
        }
    )
    assert block.kind == "reasoning" and block.texts == ["Think."]
    assert block.attachments == ["encrypted reasoning kept for the provider"]


def test_unknown_items_keep_their_json():
    block = transcript.item_block({"type": "web_search_call", "id": "ws_1", "status": "completed"})
    assert block.kind == "other" and '"ws_1"' in block.raw


def test_durations_for_people():
    assert transcript.seconds(None) == "—"
    assert transcript.seconds(0.25) == "250 ms"
    assert transcript.seconds(2.44) == "2.4 s"
    assert transcript.seconds(185) == "3 min 5 s"
    response = SimpleNamespace(created_at=100.0, started_at=100.01, first_token_at=100.5, completed_at=102.0)
    assert transcript.timings(response) == {"queued": "10 ms", "first_token": "500 ms", "total": "2.0 s"}


def test_usage_rows_include_details_when_present():
    rows = transcript.usage_rows(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    )
    assert rows == [("Input tokens", 10), ("Output tokens", 5), ("Total tokens", 15), ("of which cached", 4)]
    assert transcript.usage_rows(None) == []


def test_redact_removes_secret_fields_bearer_tokens_and_known_keys():
    wire = [
        {
            "request": {
                "headers": {
                    "Authorization": "Bearer sk-abcdef123456",
                    "x-api-key": "k",
                    "content-type": "application/json",
                },
                "body": {"model": "m", "note": "key is sk-live-999999 here"},
                "url": "https://x/v1?key=AIzaSECRET",
            },
            "answer": {"text": "Bearer abc.def"},
        }
    ]
    clean = transcript.redact(wire, ["sk-live-999999", "AIzaSECRET", "abc"])
    text = json.dumps(clean)
    for secret in ("sk-abcdef123456", "sk-live-999999", "AIzaSECRET", "abc.def"):
        assert secret not in text
    assert clean[0]["request"]["headers"]["content-type"] == "application/json"
    assert clean[0]["request"]["headers"]["x-api-key"] == transcript.REDACTED
    assert clean[0]["request"]["body"]["model"] == "m"


def test_event_summary():
    assert transcript.event_summary("response.output_text.delta", {"delta": "Hi"}) == "'Hi'"
    assert (
        transcript.event_summary(
            "response.output_item.added",
            {"item": {"type": "function_call", "name": "f", "status": "in_progress"}},
        )
        == "function_call f (in_progress)"
    )
    assert (
        transcript.event_summary("response.completed", {"response": {"status": "completed"}})
        == "status completed"
    )
    assert transcript.event_summary("response.in_progress", {}) == ""
