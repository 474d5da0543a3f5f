"""The request surface: every field of OpenAI's create request, per provider family, as documented.

Table-driven: each row of ``responses_app.services.surface.FIELDS`` is checked against a value that
would change the answer (refused exactly where the table says so), against its neutral values
(never refused), and against the table in ``docs/providers.md``. End to end, Codex CLI's first
request passes on every family, and refusals are 400 ``unsupported_parameter`` naming the param.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from django.test import override_settings

from providers_app.registry import Route
from responses_app.api.validation import KNOWN_FIELDS, validate_create
from responses_app.errors import ApiError
from responses_app.services import surface
from responses_app.services.surface import (
    FAMILIES,
    FIELDS,
    INCLUDES,
    REFUSED,
    TOOL_TYPES,
    apply_surface,
    refusals,
)
from tests.support.spec import assert_valid_error
from tests.support.upstream import Reply

ROOT = Path(__file__).resolve().parents[2]

#: A value for each field that is not neutral (it would change the answer if dropped).
SAMPLES: dict[str, typing.Any] = {
    "model": "mock-1",
    "input": "hello",
    "instructions": "Be brief.",
    "previous_response_id": None,  # needs a stored response: covered by the spine tests
    "store": False,
    "stream": True,
    "background": True,
    "metadata": {"k": "v"},
    "truncation": "auto",
    "max_tool_calls": 2,
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
    "tool_choice": "none",
    "parallel_tool_calls": False,
    "temperature": 0.3,
    "top_p": 0.5,
    "max_output_tokens": 64,
    "text.format": {"type": "json_object"},
    "text.verbosity": "low",
    "reasoning.effort": "low",
    "reasoning.summary": "detailed",
    "reasoning.generate_summary": "concise",
    "reasoning.context": "all_turns",
    "reasoning.mode": "pro",
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "top_logprobs": 3,
    "include": ["reasoning.encrypted_content"],
    "service_tier": "flex",
    "prompt_cache_key": "key-1",
    "prompt_cache_retention": "24h",
    "prompt_cache_options.mode": "explicit",
    "prompt_cache_options.ttl": "12h",
    "prompt_cache_options.comparison_response_id": "resp_1",
    "prompt_cache_options.prewarm": True,
    "safety_identifier": "user-hash",
    "user": "u1",
    "client_metadata": {"x-codex-installation-id": "abc"},
    "stream_options.include_obfuscation": False,
    "background_options.completion_window": "2h",
    "background_options.continuation_id": "c1",
    "image.context_compression": "enabled",
    "access_programs.cyber": "daybreak_red",
    "moderation": {"model": "omni-moderation-latest"},
    "context_management": [{"type": "compaction", "compact_threshold": 1000}],
    "conversation": None,  # needs a stored conversation: covered by the conversations tests
    "prompt": {"id": "pmpt_123"},
}


def body_with(name: str, value: typing.Any) -> dict[str, typing.Any]:
    body: dict[str, typing.Any] = {"model": "mock-1", "input": "hi"}
    head, _, key = name.partition(".")
    if key:
        body[head] = {key: value}
    else:
        body[head] = value
    if name == "background":
        body["store"] = True
    return body


def test_every_field_of_the_openai_sdk_create_request_is_known() -> None:
    """The installed ``openai`` SDK's ``ResponseCreateParams`` is the reference for 'every field'."""
    params = pytest.importorskip("openai.types.responses.response_create_params")
    fields = set(typing.get_type_hints(params.ResponseCreateParamsBase)) | {"stream"}
    assert fields - KNOWN_FIELDS == set()
    documented = {f.name.partition(".")[0] for f in FIELDS}
    assert fields - documented == set()


def test_every_sample_names_a_row() -> None:
    assert set(SAMPLES) == {f.name for f in FIELDS}


@pytest.mark.parametrize("family", FAMILIES)
# Rows whose sample is None need stored state (previous_response_id, conversation): their own tests cover them.
@pytest.mark.parametrize("row", [f for f in FIELDS if SAMPLES[f.name] is not None], ids=lambda f: f.name)
def test_refused_exactly_where_the_table_says(row: surface.Field, family: str) -> None:
    value = SAMPLES[row.name]
    create = validate_create(body_with(row.name, value))
    refused = {param for param, _ in refusals(create, family)}
    assert (row.name in refused) == row.refuses(family, value), (row.name, family, refused)
    assert row.refuses(family, value) == (row.treatment[family] == REFUSED) or family in row.refused_values
    for neutral in row.neutral:
        create = validate_create(body_with(row.name, neutral))
        assert refusals(create, family) == [], (row.name, neutral)


@pytest.mark.parametrize("row", FIELDS, ids=lambda f: f.name)
def test_the_mock_provider_takes_what_a_provider_could_refuse(row: surface.Field) -> None:
    value = SAMPLES[row.name]
    if value is not None:
        refused = refusals(validate_create(body_with(row.name, value)), surface.MOCK)
        assert [param for param, _ in refused] == ([row.name] if row.server_feature else [])


@pytest.mark.parametrize(("value", "treatment"), sorted(INCLUDES.items()))
def test_include_values(value: str, treatment: str) -> None:
    create = validate_create({"model": "m", "input": "x", "include": ["reasoning.encrypted_content", value]})
    for family in FAMILIES:
        refused = [param for param, _ in refusals(create, family)]
        assert refused == (["include[1]"] if treatment == REFUSED else []), (value, family)


def _docs_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "providers.md").read_text()
    start = text.index("<!-- request-surface -->")
    end = text.index("<!-- /request-surface -->")
    rows = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z_.]+)`", cells[0]) if cells else None
        if match:
            rows[match.group(1)] = [c.split()[0] if c else "" for c in cells[1 : 1 + len(FAMILIES)]]
    return rows


def test_the_docs_table_is_the_code_table() -> None:
    rows = _docs_table()
    assert list(rows) == [f.name for f in FIELDS]
    for row in FIELDS:
        assert rows[row.name] == [row.treatment[family] for family in FAMILIES], row.name


# --------------------------------------------------------------------------- tool types


def _tool_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "providers.md").read_text()
    block = text[text.index("<!-- tool-types -->") : text.index("<!-- /tool-types -->")]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z_]+)`", cells[0]) if cells else None
        if match:
            rows[match.group(1)] = cells[1 : 1 + len(FAMILIES)]
    return rows


def test_the_docs_tool_table_is_the_code_table() -> None:
    rows = _tool_table()
    assert list(rows) == list(TOOL_TYPES)
    for kind, treatment in TOOL_TYPES.items():
        assert rows[kind] == [treatment[family] for family in FAMILIES], kind


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", [k for k in TOOL_TYPES if k not in ("function", "mcp")])
def test_the_tool_table_is_what_the_loop_does(kind: str, family: str) -> None:
    """Each family's adapter, as the loop plans its tools: forwarded (taken or translated),
    ignored (left out) or refused exactly as the table says."""
    from providers_app.adapters.base import UnsupportedParameter
    from providers_app.adapters.types import ProviderConfig
    from providers_app.registry import adapter_class
    from responses_app.loop.tool_types import native_tool_types, plan_tools

    adapter = adapter_class(family)(ProviderConfig(family, family))
    tool: dict[str, typing.Any] = {"type": kind}
    if kind == "namespace":
        tool = {"type": kind, "name": "ns", "tools": [{"type": "function", "name": "f", "parameters": {}}]}
    elif kind == "custom":
        tool = {"type": kind, "name": "c"}
    treatment = TOOL_TYPES[kind][family]
    if treatment == REFUSED:
        with pytest.raises(UnsupportedParameter):
            plan_tools([tool], native_tool_types(adapter))
        return
    plan = plan_tools([tool], native_tool_types(adapter))
    assert bool(plan.tools) == (treatment == "forwarded") and bool(plan.omitted) == (treatment == "ignored")


@pytest.mark.parametrize("family", ["anthropic", "gemini"])
def test_an_operator_may_turn_a_providers_search_off(family: str) -> None:
    from providers_app.adapters.types import ProviderConfig
    from providers_app.registry import adapter_class
    from responses_app.loop.tool_types import native_tool_types, plan_tools

    config = ProviderConfig(family, family, options={"web_search": False})
    plan = plan_tools([{"type": "web_search"}], native_tool_types(adapter_class(family)(config)))
    assert plan.tools == [] and plan.omitted == ["web_search"]


# --------------------------------------------------------------------------- the operator setting


def anthropic_route() -> Route:
    return Route("anthropic", "claude-test", "claude-*", "default")


@pytest.mark.django_db
def test_refusal_names_the_param_by_default() -> None:
    create = validate_create({"model": "claude-test", "input": "x", "presence_penalty": 1})
    with pytest.raises(ApiError) as caught:
        apply_surface(create, anthropic_route())
    assert caught.value.status == 400
    assert (caught.value.param, caught.value.code) == ("presence_penalty", "unsupported_parameter")


@pytest.mark.django_db
def test_drop_unsupported_params_drops_instead() -> None:
    create = validate_create(
        {
            "model": "claude-test",
            "input": "x",
            "presence_penalty": 1,
            "text": {"verbosity": "high"},
            "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
        }
    )
    with override_settings(OPENRESPONSES={"DROP_UNSUPPORTED_PARAMS": True}):
        apply_surface(create, anthropic_route())
    assert create.params["presence_penalty"] is None
    assert "verbosity" not in create.params["text"]
    assert create.params["include"] == ["reasoning.encrypted_content"]


@pytest.mark.django_db
def test_fallbacks_count_too() -> None:
    """A field the fallback provider cannot honour is refused even when the first one could."""
    route = Route("openai", "gpt-test", "gpt-*", "default", fallbacks=(("anthropic", "claude-test"),))
    create = validate_create({"model": "gpt-test", "input": "x", "text": {"verbosity": "low"}})
    with pytest.raises(ApiError) as caught:
        apply_surface(create, route)
    assert caught.value.param == "text.verbosity"
    apply_surface(
        validate_create({"model": "gpt-test", "input": "x", "text": {"verbosity": "low"}}),
        Route("openai", "gpt-test", "gpt-*", "default"),
    )


FUNCTION_TOOL = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}


def ollama_route() -> Route:
    return Route("ollama", "llama-test", "llama*", "default")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "choice",
    [
        "required",
        {"type": "function", "name": "f"},
        {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
    ],
)
def test_ollama_refuses_a_forced_call_before_anything_is_stored(choice) -> None:
    """Ollama cannot force a call: refused at the surface, so the operator's drop setting relaxes it."""
    body = {"model": "llama-test", "input": "x", "tools": [FUNCTION_TOOL], "tool_choice": choice}
    with pytest.raises(ApiError) as caught:
        apply_surface(validate_create(body), ollama_route())
    assert (caught.value.param, caught.value.code) == ("tool_choice", "unsupported_parameter")
    assert "cannot force" in caught.value.message
    create = validate_create(body)
    with override_settings(OPENRESPONSES={"DROP_UNSUPPORTED_PARAMS": True}):
        apply_surface(create, ollama_route())
    assert create.params["tool_choice"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "choice",
    ["auto", "none", {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}],
)
def test_ollama_takes_choices_that_force_nothing(choice) -> None:
    body = {"model": "llama-test", "input": "x", "tools": [FUNCTION_TOOL], "tool_choice": choice}
    apply_surface(validate_create(body), ollama_route())
    assert refusals(validate_create({**body, "tool_choice": "required"}), "anthropic") == []


# --------------------------------------------------------------------------- end to end

#: Codex CLI's first request (issue 15), less the tool types another branch adds.
CODEX_FIRST_REQUEST = {
    "instructions": "You are Codex, a coding agent.",
    "input": [
        {
            "type": "message",
            "id": "msg_0001",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions instructions>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a shell command.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                "required": ["command"],
                "additionalProperties": False,
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a-session",
    "client_metadata": {"x-codex-installation-id": "0b5e"},
}
FAMILY_MODELS = [
    ("openai", "gpt-surface", "openai/text_stream.sse"),
    ("openai_chat", "chat-surface", "openai_chat/text_stream.sse"),
    ("anthropic", "claude-surface", "anthropic/text_stream.sse"),
    ("gemini", "gemini-surface", "gemini/text_stream.sse"),
    ("ollama", "llama-surface", "ollama/text_stream.ndjson"),
]


@pytest.mark.parametrize(("family", "model", "fixture"), FAMILY_MODELS, ids=[f[0] for f in FAMILY_MODELS])
def test_codex_first_request_is_served_on_every_family(http, upstream, family, model, fixture) -> None:
    upstream.queue(Reply.fixture(fixture))
    with http.stream("POST", "/v1/responses", json={"model": model, **CODEX_FIRST_REQUEST}) as response:
        body = response.read().decode()
    assert response.status_code == 200, body
    assert "response.completed" in body, body[-500:]
    sent = upstream.requests[-1].json()
    if family == "openai":
        assert sent["prompt_cache_key"] == "019a-session"
    assert "client_metadata" not in sent


@pytest.mark.parametrize(
    ("model", "field", "value", "param"),
    [
        ("claude-x", "prompt", {"id": "pmpt_1"}, "prompt"),
        ("gpt-x", "prompt", {"id": "pmpt_1", "variables": {"a": "b"}}, "prompt"),
        ("claude-x", "presence_penalty", 0.5, "presence_penalty"),
        ("llama-x", "top_logprobs", 2, "top_logprobs"),
        ("chat-x", "text", {"verbosity": "high"}, "text.verbosity"),
        ("gpt-x", "include", ["message.output_text.logprobs"], "include[0]"),
        ("gpt-x", "moderation", {"model": "omni-moderation-latest"}, "moderation"),
        ("claude-x", "context_management", [{"type": "compaction"}], "context_management"),
    ],
)
def test_refused_fields_are_400_unsupported_parameter(http, upstream, model, field, value, param) -> None:
    response = http.post("/v1/responses", json={"model": model, "input": "x", field: value})
    assert response.status_code == 400, response.text
    data = response.json()
    assert_valid_error(data)
    assert (data["error"]["param"], data["error"]["code"]) == (param, "unsupported_parameter")
    assert upstream.requests == []


def test_prompt_says_what_to_do_instead(http) -> None:
    response = http.post("/v1/responses", json={"model": "mock-1", "input": "x", "prompt": {"id": "pmpt_1"}})
    assert response.status_code == 400
    assert "instructions" in response.json()["error"]["message"]


def test_openai_gets_what_it_can_honour(http, upstream) -> None:
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    body = {
        "model": "gpt-x",
        "input": "x",
        "text": {"verbosity": "low"},
        "user": "u1",
        "prompt_cache_retention": "24h",
        "safety_identifier": "s1",
        "service_tier": "flex",
        "stream_options": {"include_obfuscation": False},
        "client_metadata": {"a": "b"},
    }
    response = http.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    sent = upstream.requests[-1].json()
    assert sent["text"]["verbosity"] == "low"
    assert (sent["user"], sent["prompt_cache_retention"], sent["safety_identifier"]) == ("u1", "24h", "s1")
    assert sent["service_tier"] == "flex"
    assert "client_metadata" not in sent and "stream_options" not in sent


def test_stream_options_obfuscation_is_never_added(http) -> None:
    for flag in (True, False):
        with http.stream(
            "POST",
            "/v1/responses",
            json={
                "model": "mock-1",
                "input": "a b",
                "stream": True,
                "stream_options": {"include_obfuscation": flag},
            },
        ) as response:
            text = response.read().decode()
        assert response.status_code == 200
        assert "response.output_text.delta" in text and "obfuscation" not in text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"stream_options": {"include_obfuscation": "yes"}}, "stream_options.include_obfuscation"),
        ({"stream_options": {"chunk_size": 3}}, "stream_options.chunk_size"),
        ({"client_metadata": ["a"]}, "client_metadata"),
        ({"prompt_cache_retention": "forever"}, "prompt_cache_retention"),
        ({"reasoning": {"context": []}}, "reasoning.context"),
        ({"reasoning": {"colour": "blue"}}, "reasoning.colour"),
        ({"conversation": 5}, "conversation"),
        ({"context_management": [{"type": 1}]}, "context_management[0].type"),
    ],
)
def test_new_fields_are_type_checked(http, body, param) -> None:
    response = http.post("/v1/responses", json={"model": "mock-1", "input": "x", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
