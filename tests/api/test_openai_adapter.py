"""Every recorded OpenAI Responses fixture replayed through the running server (gpt-* -> openai).

Checks both sides: the events and final response (spec-valid, expected order and values) and
the request the adapter sent upstream (against the recorded ``*.request.json``).
"""

from __future__ import annotations

import json

import pytest

from tests.support.api import output_text
from tests.support.replay import (
    CALL,
    EMPTY_REASONING,
    HEAD,
    TEXT,
    Case,
    all_fixtures,
    compare_request,
    run_case,
)
from tests.support.upstream import Reply

USER = {"role": "user", "content": "What is the capital of France?"}
GET_CAPITAL = {
    "type": "function",
    "name": "get_capital",
    "description": "",
    "strict": True,
    "parameters": {
        "additionalProperties": False,
        "properties": {"country": {"type": "string"}},
        "required": ["country"],
        "type": "object",
    },
}
GET_LOCATION = {
    "type": "function",
    "name": "get_location",
    "description": "",
    "strict": True,
    "parameters": {
        "additionalProperties": False,
        "properties": {"loc_name": {"type": "string"}},
        "required": ["loc_name"],
        "type": "object",
    },
}
FINAL_RESULT = {
    "type": "function",
    "name": "final_result",
    "description": "The final response which ends this conversation",
    "strict": True,
    "parameters": {
        "additionalProperties": False,
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
        "type": "object",
    },
}
CALL_ID = "fc_67e554a1de488191af0831d35cbe082e0794405d35281ae2"


def _text_check(expected: str, usage: tuple[int, int]):
    def check(resource):
        assert output_text(resource) == expected
        assert (resource["usage"]["input_tokens"], resource["usage"]["output_tokens"]) == usage
        assert resource["output"][0]["id"].startswith("msg_")

    return check


def _calls(resource):
    return [
        (i["name"], json.loads(i["arguments"]), i["call_id"])
        for i in resource["output"]
        if i["type"] == "function_call"
    ]


def _parallel_check(resource):
    assert _calls(resource) == [
        ("get_location", {"loc_name": "Londos"}, "call_LWVp74L5HaH2KNvgVz9PJsrj"),
        ("get_location", {"loc_name": "London"}, "call_YnRAWeTyxI91m5uNa5bxXwVO"),
    ]
    assert all(i["status"] == "completed" and i["id"].startswith("fc_") for i in resource["output"])


def _reasoning_check(resource):
    reasoning, call = resource["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["encrypted_content"].startswith("gAAAAABoyXvx")
    assert reasoning["summary"] == []
    assert _calls(resource) == [("final_result", {"result": 6666}, "call_CWXgs68YprAjp6t0371hiPOI")]
    assert resource["usage"]["output_tokens_details"]["reasoning_tokens"] == 448


def _error_check(body):
    assert body["error"]["code"] == "upstream_invalid_request"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "temperature"
    assert "Invalid 'temperature': decimal below minimum value" in body["error"]["message"]


CASES = [
    Case(
        "openai/text_nonstream.json",
        "gpt-4o",
        {"input": [USER]},
        stream=False,
        shape=HEAD + TEXT + ["response.completed"],
        check=_text_check("The capital of France is Paris.", (14, 8)),
    ),
    Case(
        "openai/text_stream.sse",
        "gpt-4o",
        {
            "input": [
                USER,
                {
                    "type": "function_call",
                    "call_id": CALL_ID,
                    "name": "get_capital",
                    "arguments": '{"country":"France"}',
                },
                {"type": "function_call_output", "call_id": CALL_ID, "output": "Paris"},
            ],
            "tools": [GET_CAPITAL],
            "tool_choice": "auto",
        },
        stream=True,
        shape=HEAD + TEXT + ["response.completed"],
        check=_text_check("The capital of France is Paris.", (278, 9)),
    ),
    Case(
        "openai/function_call_stream.sse",
        "gpt-4o",
        {"input": [USER], "tools": [GET_CAPITAL], "tool_choice": "auto"},
        stream=True,
        shape=HEAD + CALL + ["response.completed"],
        check=lambda r: (
            _calls(r) == [("get_capital", {"country": "France"}, "call_kL0PCQV7M2WMoVX8V8OtYSAL")]
            or pytest.fail(str(_calls(r)))
        ),
    ),
    Case(
        "openai/parallel_function_calls_nonstream.json",
        "gpt-4o",
        {
            "input": [{"role": "user", "content": "What is the location of Londos and London?"}],
            "tools": [GET_LOCATION],
            "tool_choice": "auto",
        },
        stream=False,
        shape=HEAD + CALL + CALL + ["response.completed"],
        check=_parallel_check,
    ),
    Case(
        "openai/reasoning_function_call_stream.sse",
        "gpt-5",
        {
            "input": [{"role": "user", "content": "Calculate 100 * 200 / 3"}],
            "reasoning": {"effort": "low"},
            "service_tier": "flex",
            "tool_choice": "required",
            "tools": [FINAL_RESULT],
            "include": ["reasoning.encrypted_content"],
        },
        stream=True,
        shape=HEAD + EMPTY_REASONING + CALL + ["response.completed"],
        check=_reasoning_check,
    ),
    Case(
        "openai/error_400_invalid_value.json",
        "gpt-4o",
        {"input": [USER], "temperature": 0},
        stream=True,
        status=400,
        check=_error_check,
        # Our own validation answers temperature -1 with a 400 before any upstream call, so the
        # replay sends a valid temperature and checks that the provider's 400 is relayed.
        expect={"temperature": 0},
    ),
]


def test_every_openai_fixture_has_a_case():
    assert sorted(c.fixture for c in CASES) == all_fixtures("openai")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_openai_fixture_through_server(http, upstream, case):
    _result, _events, sent = run_case(http, upstream, case)
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk-test-openai-secret-0001"
    body = sent.json()
    assert body["store"] is False, "we keep the state; upstream must not"
    assert "reasoning.encrypted_content" in body["include"]
    compare_request(case, sent)


def test_openai_error_non_stream_is_http_400(http, upstream):
    case = Case(
        "openai/error_400_invalid_value.json",
        "gpt-4o",
        {"input": [USER], "temperature": 0},
        stream=False,
        status=400,
        check=_error_check,
    )
    run_case(http, upstream, case)


def test_openai_reasoning_round_trips_encrypted_content(http, upstream):
    """The reasoning item made by OpenAI goes back to OpenAI verbatim, with its own id."""
    case = CASES[4]
    first, _events, _sent = run_case(http, upstream, case)
    call = next(i for i in first["output"] if i["type"] == "function_call")
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    second = http.post(
        "/v1/responses",
        json={
            "model": "gpt-5",
            "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "6666"}],
        },
    ).json()
    assert second["status"] == "completed"
    sent = upstream.requests[-1].json()
    reasoning = [i for i in sent["input"] if i.get("type") == "reasoning"]
    assert reasoning == [
        {
            "type": "reasoning",
            "summary": [],
            "encrypted_content": first["output"][0]["encrypted_content"],
            "id": "rs_0050471a34b36ae60068c97bac4dcc819595fd0f80d6b3c405",
        }
    ]
    assert [i.get("type", "message") for i in sent["input"]] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert sent["input"][2]["call_id"] == "call_CWXgs68YprAjp6t0371hiPOI"


def test_openai_fixture_via_sdk(openai_client, upstream):
    """The official SDK reads the replayed stream (typed events) and the final response."""
    upstream.queue(Reply.fixture("openai/function_call_stream.sse"))
    events = list(
        openai_client.responses.create(
            model="gpt-4o", input="What is the capital of France?", tools=[GET_CAPITAL], stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    final = events[-1].response
    call = final.output[0]
    assert (
        call.type == "function_call"
        and call.name == "get_capital"
        and json.loads(call.arguments) == {"country": "France"}
    )
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    response = openai_client.responses.create(model="gpt-4o", input="What is the capital of France?")
    assert response.output_text == "The capital of France is Paris."
    assert response.usage.total_tokens == 22
