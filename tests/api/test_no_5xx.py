"""No input answers 5xx: generated bodies against real servers, on SQLite and on PostgreSQL.

Two generators, both from the spec document: our own strategy (``tests.support.fuzz``: the
create schema with hostile values swapped in) and schemathesis (positive and negative cases
for ``POST /responses`` and ``POST /responses/compact``). Valid-looking bodies mostly name a
mock model, so they run the whole path: validation, storage, the loop, the answer. Example
counts are bounded so each database takes about a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fuzz import MOCK_MODELS, create_bodies, load_spec
from tests.support.fuzz import SPEC as SPEC_PATH
from tests.support.production import PostgresDatabase, require_services
from tests.support.server import ServerProcess

schemathesis = pytest.importorskip("schemathesis")

SPEC = load_spec()
LIVE = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SCHEMATHESIS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded server (in-process loops) on SQLite, then on PostgreSQL."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    database = None
    env = {
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_CONFIG": "",
        "OPENRESPONSES_HOSTED_TOOLS": "tests.support.hosted_tools.get_weather",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    if request.param == "postgresql":
        require_services()
        database = PostgresDatabase("or_fuzz")
        env["DATABASE_URL"] = database.url
        # Production mode (a DATABASE_URL, DEBUG off) refuses the repository's development key.
        env["DJANGO_SECRET_KEY"] = "tests-fuzz-secret-key-not-for-production-use"
    process = ServerProcess(env, name=f"fuzz-{request.param}")
    try:
        process.start()
        yield process.url
    finally:
        process.stop()
        if database is not None:
            database.drop()


def assert_not_5xx(response: httpx.Response, sent: object) -> None:
    assert response.status_code < 500, f"{response.status_code} for {sent!r:.2000}: {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["message"] and error["type"], response.text


M = '"model": "mock-1"'
MCP = '{"type": "mcp", "server_label": "a", "server_url": "http://127.0.0.1:9/mcp"'
# (raw JSON fields after the model, the param named in the 400): each answered 500 before.
REGRESSIONS = [
    ('"input": "x", "truncation": []', "truncation"),
    ('"input": "x", "service_tier": {}', "service_tier"),
    ('"input": "x", "include": [["reasoning.encrypted_content"]]', "include[0]"),
    ('"input": "x", "reasoning": {"effort": []}', "reasoning.effort"),
    ('"input": "x", "reasoning": {"summary": {}}', "reasoning.summary"),
    ('"input": "x", "text": {"verbosity": ["low"]}', "text.verbosity"),
    ('"input": "x", "text": {"format": {"type": {}}}', "text.format.type"),
    ('"input": [{"role": ["user"], "content": "x"}]', "input[0].role"),
    ('"input": [{"role": "user", "content": [{"type": []}]}]', "input[0].content[0].type"),
    ('"input": [{"role": "assistant", "content": "x", "phase": {}}]', "input[0].phase"),
    ('"input": "x", "temperature": NaN', None),
    ('"input": "x", "temperature": Infinity', None),
    ('"input": "\\ud800"', "input"),
    (
        '"input": [{"role": "user", "content": [{"type": "input_text", "text": "a\\udc00"}]}]',
        "input[0].content[0].text",
    ),
    ('"input": "x", "metadata": {"k": ' + "[" * 1000 + "]" * 1000 + "}", None),
    ('"input": "x", "tools": [' + MCP + ', "allowed_tools": 5}]', "tools[0].allowed_tools"),
    ('"input": "x", "tools": [' + MCP + ', "headers": [1]}]', "tools[0].headers"),
    ('"input": [{"role": "user", "content": "x", "id": "msg_\\u0000"}]', "input[0].id"),
    ('"input": "x", "previous_response_id": "resp_\\u0000"', "previous_response_id"),
    ('"input": [{"role": "user", "content": "x", "id": "' + "m" * 81 + '"}]', "input[0].id"),
]
# NUL in a text, an instruction or a metadata value answered 500, then a 400; now it is stored as
# sent (an identifier with a NUL is still a 400, above).
NUL_TEXTS = [
    '"input": "a\\u0000b"',
    '"input": "x", "instructions": "\\u0000"',
    '"input": "x", "metadata": {"k": "v\\u0000"}',
]
MODEL_REGRESSIONS = [
    ('{"model": "mock-1\\u0000", "input": "x"}', "model"),
    ('{"model": "mock-' + "x" * 200 + '", "input": "x"}', "model"),
]


def _regression_bodies() -> list[tuple[str, str | None]]:
    return [("{" + M + ", " + fields + "}", param) for fields, param in REGRESSIONS] + MODEL_REGRESSIONS


@pytest.mark.parametrize(
    ("raw", "param"), _regression_bodies(), ids=[f"{i}-{p}" for i, (_, p) in enumerate(_regression_bodies())]
)
def test_known_500s_are_400s_naming_the_param(fuzz_server: str, raw: str, param: str | None) -> None:
    with httpx.Client(base_url=fuzz_server, timeout=60) as client:
        response = client.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
        if not _compact_body(raw):
            return  # not a compact body: the create fields are checked above
        response = client.post(
            "/v1/responses/compact", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("fields", NUL_TEXTS)
def test_nul_in_a_text_is_stored_as_sent(fuzz_server: str, fields: str) -> None:
    raw = "{" + M + ", " + fields + "}"
    sent = json.loads(raw)
    with httpx.Client(base_url=fuzz_server, timeout=60) as client:
        response = client.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        for resource in (response.json(), client.get(f"/v1/responses/{response.json()['id']}").json()):
            assert resource["status"] == "completed"
            assert resource["instructions"] == sent.get("instructions")
            assert resource["metadata"] == sent.get("metadata", {})
            text = resource["output"][0]["content"][0]["text"]
            assert text.endswith(sent["input"]), text


def test_known_500s_are_400s_over_websocket(fuzz_server: str) -> None:
    from websockets.sync.client import connect

    url = fuzz_server.replace("http://", "ws://", 1) + "/v1/responses"
    with connect(url, open_timeout=10, close_timeout=2) as socket:
        for raw, param in _regression_bodies():
            socket.send('{"type": "response.create", ' + raw[1:])
            event = json.loads(socket.recv(timeout=30))
            assert event["type"] == "error" and event["status"] == 400, (raw[:200], event)
            assert event["error"]["param"] == param, (raw[:200], event)
        # The connection still serves turns after all that.
        socket.send(json.dumps({"type": "response.create", "model": "mock-1", "input": "still here"}))
        while (event := json.loads(socket.recv(timeout=30)))["type"] != "response.completed":
            assert event["type"] != "error", event


def test_generated_bodies_never_5xx(fuzz_server: str) -> None:
    with httpx.Client(base_url=fuzz_server, timeout=60) as client:

        @LIVE
        @given(raw=create_bodies(SPEC), path=st.sampled_from(["/v1/responses", "/v1/responses/compact"]))
        def check(raw: str, path: str) -> None:
            if path.endswith("compact"):
                raw = _compact_shaped(raw)
            response = client.post(
                path,
                content=raw.encode("utf-8", "surrogatepass"),
                headers={"content-type": "application/json"},
            )
            assert_not_5xx(response, raw)

        check()


COMPACT_FIELDS = {"model", "input", "previous_response_id", "instructions", "prompt_cache_key"}


def _compact_body(raw: str) -> bool:
    """``raw`` holds only fields of a compact body (NaN and deep nesting count as not)."""
    try:
        body = json.loads(raw, parse_constant=lambda name: 1 / 0)
    except (ValueError, RecursionError, ZeroDivisionError):
        return False
    return set(body) <= COMPACT_FIELDS


def _compact_shaped(raw: str) -> str:
    """Keep only the fields a compact body has (else nearly every body is an ``unknown_parameter``)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    if not isinstance(body, dict):
        return raw
    return json.dumps({k: v for k, v in body.items() if k in COMPACT_FIELDS}, allow_nan=True)


@pytest.mark.parametrize("path", ["/responses", "/responses/compact"])
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_never_5xx(fuzz_server: str, path: str, mode: str) -> None:
    schema = schemathesis.openapi.from_path(str(SPEC_PATH))
    operation = schema[path]["POST"]
    cases = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @SCHEMATHESIS
    @given(case=cases, model=st.sampled_from((*MOCK_MODELS, None)))
    def check(case: object, model: str | None) -> None:
        if model is not None and isinstance(case.body, dict):
            case.body["model"] = model
        response = case.call(base_url=fuzz_server + "/v1", timeout=60)
        assert response.status_code < 500, (
            f"{response.status_code} for {case.body!r:.2000}: {response.text[:500]}"
        )

    check()


def test_websocket_messages_never_5xx(fuzz_server: str) -> None:
    from websockets.sync.client import connect

    url = fuzz_server.replace("http://", "ws://", 1) + "/v1/responses"
    with connect(url, open_timeout=10, close_timeout=2) as socket:

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(raw=create_bodies(SPEC))
        def check(raw: str) -> None:
            try:
                body = json.loads(raw)
                message = (
                    json.dumps({"type": "response.create", **body}, allow_nan=True)
                    if isinstance(body, dict)
                    else raw
                )
            except ValueError:
                message = raw
            socket.send(message)
            while True:
                event = json.loads(socket.recv(timeout=60))
                if event["type"] == "error":
                    assert event.get("status", 400) < 500, f"{event} for {message[:2000]}"
                    return
                if event["type"] in {"response.completed", "response.failed", "response.incomplete"}:
                    return

        check()
