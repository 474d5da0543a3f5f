"""POST /v1/responses/compact and truncation, end to end (mock and OpenAI via the fake upstream)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from django.test import override_settings

from responses_app.services import compaction
from tests.conftest import TINY_CONTEXT
from tests.support.api import create, output_text
from tests.support.server import ServerProcess
from tests.support.spec import assert_valid_compact, assert_valid_error
from tests.support.upstream import Reply

TINY = TINY_CONTEXT  # tokens: the context window of the models named *-tiny on the server
FIXTURE_ANSWER = "The capital of France is Paris."


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    """The session's embedded server (its *-tiny models have tiny context windows)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def compact(api: httpx.Client, body: dict, *, expect: int = 200) -> dict:
    response = api.post("/v1/responses/compact", json=body)
    assert response.status_code == expect, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    if expect == 200:
        assert_valid_compact(data)
    else:
        assert_valid_error(data)
    return data


def compaction_item(resource: dict) -> dict:
    items = [item for item in resource["output"] if item["type"] == "compaction"]
    assert len(items) == 1, resource["output"]
    return items[0]


def texts(upstream_input: list[dict]) -> list[str]:
    return [
        part.get("text", "")
        for item in upstream_input
        if item.get("type") == "message"
        for part in item["content"]
    ]


# --------------------------------------------------------------------------- the endpoint


def test_a_compact_request_needs_a_model(api):
    error = compact(api, {"input": "hello"}, expect=400)
    assert (error["error"]["param"], error["error"]["code"]) == ("model", "missing_required_parameter")


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "mock-1"}, 400, "input", "missing_required_parameter"),
        ({"model": "mock-1", "input": []}, 400, "input", "missing_required_parameter"),
        ({"model": "mock-1", "input": "x", "stream": True}, 400, "stream", "unknown_parameter"),
        ({"model": "mock-1", "input": 5}, 400, "input", "invalid_type"),
        (
            {"model": "mock-1", "input": "x", "prompt_cache_key": "k" * 65},
            400,
            "prompt_cache_key",
            "string_above_max_length",
        ),
        ({"model": "no-such-model-anywhere", "input": "x"}, 404, "model", "model_not_found"),
        (
            {"model": "mock-1", "previous_response_id": "resp_missing"},
            404,
            "previous_response_id",
            "previous_response_not_found",
        ),
    ],
)
def test_bad_compact_requests(api, body, status, param, code):
    error = compact(api, body, expect=status)
    assert (error["error"]["param"], error["error"]["code"]) == (param, code)


def test_get_is_not_allowed(api):
    response = api.get("/v1/responses/compact")
    assert response.status_code == 405
    assert_valid_error(response.json())


def test_mock_round_trip_from_a_stored_chain(api):
    first = create(api, {"model": "mock-1", "input": "My cat is called Miso."})
    second = create(
        api, {"model": "mock-1", "input": "She is three years old.", "previous_response_id": first["id"]}
    )
    result = compact(
        api, {"model": "mock-1", "previous_response_id": second["id"], "instructions": "Be brief."}
    )
    assert result["object"] == "response.compaction"
    assert (
        result["usage"]["total_tokens"]
        == result["usage"]["input_tokens"] + result["usage"]["output_tokens"]
        > 0
    )
    item = compaction_item(result)
    assert item["id"].startswith("cmp_")
    assert "Miso" not in item["encrypted_content"]  # opaque to the client
    kept = [i for i in result["output"] if i["type"] == "message"]
    assert [i["role"] for i in kept] == ["user"]
    assert kept[0]["content"][0]["text"] == "She is three years old."
    assert result["output"][-1]["type"] == "compaction"

    # The mock echoes the transcript it was asked to summarise: the summary holds the whole chain.
    summary = compaction.unseal(item["encrypted_content"])["summary"]
    assert "My cat is called Miso." in summary and "She is three years old." in summary

    # The output is the context of a new chain (no previous_response_id).
    third = create(
        api, {"model": "mock-1", "input": [*result["output"], {"role": "user", "content": "How old is she?"}]}
    )
    assert third["status"] == "completed"
    assert output_text(third) == "(turn 2) You said: How old is she?"
    items = api.get(f"/v1/responses/{third['id']}/input_items", params={"order": "asc"}).json()["data"]
    assert [i["type"] for i in items] == ["message", "compaction", "message"]
    assert items[1]["encrypted_content"] == item["encrypted_content"]


def test_compacting_a_compacted_conversation(api):
    first = compact(
        api,
        {
            "model": "mock-1",
            "input": [
                {"role": "user", "content": "The code word is heliotrope."},
                {"role": "assistant", "content": "Noted."},
            ],
        },
    )
    second = compact(
        api,
        {"model": "mock-1", "input": [*first["output"], {"role": "user", "content": "Also remember 42."}]},
    )
    summary = compaction.unseal(compaction_item(second)["encrypted_content"])["summary"]
    assert "heliotrope" in summary and "42" in summary


def test_openai_round_trip_expands_the_compaction_for_the_upstream(api, upstream):
    upstream.queue(Reply.fixture("openai/text_nonstream.json"), Reply.fixture("openai/text_nonstream.json"))
    conversation = [
        {"role": "user", "content": "Which city is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Tell me again, please."},
    ]
    result = compact(api, {"model": "gpt-4o-mini", "input": conversation})
    summarize_call = upstream.requests[0]
    assert summarize_call.path == "/v1/responses"
    body = summarize_call.json()
    assert body["model"] == "gpt-4o-mini" and body["instructions"] == compaction.SUMMARIZER_INSTRUCTIONS
    transcript = "\n".join(texts(body["input"]))
    assert "user: Which city is the capital of France?" in transcript and "assistant: Paris." in transcript
    assert (
        result["usage"]["input_tokens"] == 14 and result["usage"]["output_tokens"] == 8
    )  # the provider's own figures
    assert compaction.unseal(compaction_item(result)["encrypted_content"])["summary"] == FIXTURE_ANSWER

    answer = create(
        api,
        {"model": "gpt-4o-mini", "input": [*result["output"], {"role": "user", "content": "And of Italy?"}]},
    )
    assert answer["status"] == "completed"
    sent = upstream.requests[1].json()["input"]
    assert all(item.get("type") != "compaction" for item in sent)
    developer = [item for item in sent if item.get("role") == "developer"]
    assert len(developer) == 1
    assert developer[0]["content"][0]["text"] == compaction.SUMMARY_PREFIX + FIXTURE_ANSWER
    assert texts(sent)[-1] == "And of Italy?"


def test_a_compaction_not_made_here_is_refused(api):
    result = compact(api, {"model": "mock-1", "input": "remember this"})
    item = compaction_item(result)
    token = item["encrypted_content"]
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    for content in (tampered, "gAAAAABpM0Yj-foreign="):
        response = api.post(
            "/v1/responses",
            json={
                "model": "mock-1",
                "input": [
                    {"type": "compaction", "encrypted_content": content},
                    {"role": "user", "content": "hi"},
                ],
            },
        )
        assert response.status_code == 400, response.text
        error = response.json()
        assert_valid_error(error)
        assert (error["error"]["param"], error["error"]["code"]) == (
            "input[0].encrypted_content",
            "invalid_encrypted_content",
        )


# --------------------------------------------------------------------------- truncation


def test_disabled_truncation_refuses_an_over_long_context(api, upstream):
    long_text = "word " * (TINY * 2)
    response = api.post("/v1/responses", json={"model": "gpt-tiny", "input": long_text})
    assert response.status_code == 400, response.text
    error = response.json()
    assert_valid_error(error)
    assert (error["error"]["param"], error["error"]["code"]) == ("input", "context_length_exceeded")
    assert upstream.requests == []  # never sent


def test_auto_truncation_leaves_out_the_oldest_turns(api, upstream):
    upstream.queue(Reply.fixture("openai/text_nonstream.json"), Reply.fixture("openai/text_nonstream.json"))
    paragraph = "x" * 600  # about 150 tokens: one turn fits the 300-token window, two do not
    first = create(
        api,
        {
            "model": "gpt-tiny",
            "truncation": "auto",
            "input": [
                {"role": "developer", "content": "Always answer in French."},
                {"role": "user", "content": "first " + paragraph},
            ],
        },
    )
    second = create(
        api,
        {
            "model": "gpt-tiny",
            "truncation": "auto",
            "previous_response_id": first["id"],
            "input": "second " + paragraph,
        },
    )
    assert second["status"] == "completed" and second["truncation"] == "auto"
    sent = texts(upstream.requests[1].json()["input"])
    assert sent[0] == "Always answer in French."  # system/developer messages are kept
    assert (
        not any(t.startswith("first ") for t in sent) and FIXTURE_ANSWER not in sent
    )  # the oldest turn is left out
    assert any("left out to fit" in t for t in sent)
    assert sent[-1] == "second " + paragraph

    # The same chain with truncation disabled is refused.
    refused = api.post(
        "/v1/responses",
        json={"model": "gpt-tiny", "previous_response_id": first["id"], "input": "second " + paragraph},
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"


def test_auto_truncation_cannot_shorten_the_last_turn(api):
    response = api.post(
        "/v1/responses", json={"model": "mock-tiny", "truncation": "auto", "input": "word " * (TINY * 2)}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_auto_truncation_on_the_mock_provider(api):
    paragraph = "y" * 600
    first = create(api, {"model": "mock-tiny", "truncation": "auto", "input": "one " + paragraph})
    second = create(
        api, {"model": "mock-tiny", "truncation": "auto", "previous_response_id": first["id"], "input": "two"}
    )
    # The mock numbers turns by the user messages it sees: after truncation it sees only one.
    assert output_text(second) == "You said: two"
    wide = create(
        api,
        {
            "model": "mock-1",
            "truncation": "auto",
            "previous_response_id": create(api, {"model": "mock-1", "input": "one " + paragraph})["id"],
            "input": "two",
        },
    )
    assert output_text(wide) == "(turn 2) You said: two"


# --------------------------------------------------------------------------- pure functions


def test_seal_round_trip_and_tamper_detection():
    token = compaction.seal({"summary": "hello"})
    assert token.startswith(compaction.TOKEN_PREFIX) and "hello" not in token
    assert compaction.unseal(token)["summary"] == "hello"
    with pytest.raises(ValueError):
        compaction.unseal(token[:-4] + "AAAA")
    with pytest.raises(ValueError):
        compaction.unseal("not-ours")


def test_other_secrets_sealed_with_the_same_key_are_not_compactions():
    from providers_app.secrets import encrypt

    with pytest.raises(ValueError):
        compaction.unseal(compaction.TOKEN_PREFIX + encrypt("sk-provider-key"))


def test_expansion_turns_a_compaction_into_a_developer_message():
    token = compaction.seal({"summary": "We talked about cats."})
    items = [
        {"type": "compaction", "id": "cmp_1", "encrypted_content": token},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ]
    expanded = compaction.expand_compactions(items)
    assert expanded[0]["role"] == "developer" and expanded[0]["id"] == "cmp_1"
    assert expanded[0]["content"] == [
        {"type": "input_text", "text": compaction.SUMMARY_PREFIX + "We talked about cats."}
    ]
    assert expanded[1] is items[1]


def _msg(role: str, text: str) -> dict:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def test_truncate_keeps_tool_calls_with_their_outputs():
    items = [
        _msg("system", "rules"),
        _msg("user", "a" * 400),
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "b" * 400},
        _msg("user", "c" * 400),
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "d" * 40},
    ]
    out = compaction.truncate(items, window=260, truncation="auto", max_output_tokens=16)
    kinds = [(i["type"], i.get("call_id") or i.get("role")) for i in out]
    assert kinds == [
        ("message", "system"),
        ("message", "developer"),
        ("message", "user"),
        ("function_call", "c2"),
        ("function_call_output", "c2"),
    ]
    assert compaction.truncate(items, window=100_000, truncation="disabled") is items
    with pytest.raises(Exception) as exc:
        compaction.truncate(items, window=260, truncation="disabled")
    assert getattr(exc.value, "code", None) == "context_length_exceeded" and exc.value.status == 400


def test_context_windows_and_compaction_model_come_from_settings():
    with override_settings(
        OPENRESPONSES={"MODEL_CONTEXT_TOKENS": {"house-*": 1234}, "COMPACTION_MODEL": "mock-summarizer"}
    ):
        assert compaction.context_window("house-model") == 1234
        assert compaction.context_window("claude-sonnet-4-5") == 200_000
        assert compaction.context_window("alias", "gpt-5-mini") == 400_000  # the upstream name counts too
        assert compaction.summary_model() == "mock-summarizer"
    with override_settings(OPENRESPONSES={"MODEL_CONTEXT_TOKENS": "a*=10, b*=20"}):
        assert (compaction.context_window("abc"), compaction.context_window("bcd")) == (10, 20)
        assert compaction.context_window("unknown") == compaction.DEFAULT_CONTEXT_TOKENS
        assert compaction.summary_model() is None


def test_transcript_renders_every_item_kind():
    text = compaction.transcript_text(
        [
            _msg("user", "hi"),
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": json.dumps({"q": 1})},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_text", "text": "found"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "see"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
        ]
    )
    assert (
        "user: hi" in text
        and "lookup" in text
        and "tool result (call c1): found" in text
        and "[image attached]" in text
    )
