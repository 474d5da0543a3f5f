"""Malformed requests: each answered with the right status, the spec's error shape and the offending param."""

from __future__ import annotations

import pytest

from tests.support.spec import assert_valid_error

CASES = [
    # (body, status, param, code)
    ({"input": "hi"}, 400, "model", "missing_required_parameter"),
    ({"model": 42, "input": "hi"}, 400, "model", "invalid_type"),
    ({"model": "mock-1"}, 400, "input", "missing_required_parameter"),
    ({"model": "mock-1", "input": 5}, 400, "input", "invalid_type"),
    ({"model": "mock-1", "input": [{"type": "bogus"}]}, 400, "input[0].type", "invalid_value"),
    ({"model": "mock-1", "input": ["text"]}, 400, "input[0]", "invalid_type"),
    (
        {"model": "mock-1", "input": [{"role": "wizard", "content": "x"}]},
        400,
        "input[0].role",
        "invalid_value",
    ),
    ({"model": "mock-1", "input": [{"role": "user"}]}, 400, "input[0].content", "missing_required_parameter"),
    (
        {"model": "mock-1", "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
        400,
        "input[0].content[0].type",
        "invalid_value",
    ),
    (
        {
            "model": "mock-1",
            "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}],
        },
        400,
        "input[0].content[0].image_url",
        "invalid_image_url",
    ),
    (
        {
            "model": "mock-1",
            "input": [{"type": "function_call", "call_id": "c", "name": "bad name!", "arguments": "{}"}],
        },
        400,
        "input[0].name",
        "invalid_value",
    ),
    (
        {"model": "mock-1", "input": [{"type": "function_call_output", "output": "x"}]},
        400,
        "input[0].call_id",
        "missing_required_parameter",
    ),
    (
        {"model": "mock-1", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
        400,
        "input[0].call_id",
        "unknown_call_id",
    ),
    ({"model": "mock-1", "input": "x", "temperature": 3}, 400, "temperature", "above_maximum"),
    ({"model": "mock-1", "input": "x", "temperature": "hot"}, 400, "temperature", "invalid_type"),
    ({"model": "mock-1", "input": "x", "top_p": -0.1}, 400, "top_p", "below_minimum"),
    ({"model": "mock-1", "input": "x", "max_output_tokens": 5}, 400, "max_output_tokens", "below_minimum"),
    ({"model": "mock-1", "input": "x", "max_output_tokens": 20.5}, 400, "max_output_tokens", "invalid_type"),
    ({"model": "mock-1", "input": "x", "stream": "yes"}, 400, "stream", "invalid_type"),
    ({"model": "mock-1", "input": "x", "tools": {"type": "function"}}, 400, "tools", "invalid_type"),
    (
        {"model": "mock-1", "input": "x", "tools": [{"type": "teleport"}]},
        400,
        "tools[0].type",
        "invalid_value",
    ),
    (
        {"model": "mock-1", "input": "x", "tools": [{"type": "function"}]},
        400,
        "tools[0].name",
        "missing_required_parameter",
    ),
    (
        {"model": "mock-1", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
        400,
        "tools[0].parameters",
        "invalid_type",
    ),
    ({"model": "mock-1", "input": "x", "tool_choice": "sometimes"}, 400, "tool_choice", "invalid_value"),
    (
        {"model": "mock-1", "input": "x", "tool_choice": {"type": "function", "name": "missing"}},
        400,
        "tool_choice.name",
        "unknown_tool",
    ),
    (
        {"model": "mock-1", "input": "x", "text": {"format": {"type": "xml"}}},
        400,
        "text.format.type",
        "invalid_value",
    ),
    (
        {"model": "mock-1", "input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}},
        400,
        "text.format.schema",
        "invalid_type",
    ),
    (
        {"model": "mock-1", "input": "x", "reasoning": {"effort": "extreme"}},
        400,
        "reasoning.effort",
        "invalid_value",
    ),
    ({"model": "mock-1", "input": "x", "truncation": "sometimes"}, 400, "truncation", "invalid_value"),
    ({"model": "mock-1", "input": "x", "metadata": {"k": 1}}, 400, "metadata.k", "invalid_type"),
    ({"model": "mock-1", "input": "x", "include": ["everything"]}, 400, "include[0]", "invalid_value"),
    ({"model": "mock-1", "input": "x", "temprature": 1}, 400, "temprature", "unknown_parameter"),
    ({"model": "mock-1", "input": "x", "background": True, "store": False}, 400, "store", "invalid_value"),
    ({"model": "no-such-model-anywhere", "input": "x"}, 404, "model", "model_not_found"),
    (
        {"model": "mock-1", "input": "x", "previous_response_id": "resp_missing"},
        404,
        "previous_response_id",
        "previous_response_not_found",
    ),
]


@pytest.mark.parametrize(("body", "status", "param", "code"), CASES, ids=[f"{c[2]}-{c[3]}" for c in CASES])
def test_bad_request(http, body, status, param, code):
    response = http.post("/v1/responses", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert_valid_error(data)
    assert data["error"]["param"] == param
    assert data["error"]["code"] == code


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
def test_malformed_bodies(http, raw, content_type):
    response = http.post("/v1/responses", content=raw, headers={"content-type": content_type})
    assert response.status_code == 400
    data = response.json()
    assert_valid_error(data)
    assert data["error"]["code"] == "invalid_json"


def test_unknown_routes_and_methods_are_json(http):
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    response = http.get("/v1/responses")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = http.put("/v1/responses/resp_x")
    assert response.status_code == 405


def test_bad_query_parameters(http):
    created = http.post("/v1/responses", json={"model": "mock-1", "input": "x"}).json()
    for params, param in [
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "msg_nope"}, "after"),
    ]:
        response = http.get(f"/v1/responses/{created['id']}/input_items", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param
    response = http.get(f"/v1/responses/{created['id']}", params={"stream": "true", "starting_after": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "starting_after"
