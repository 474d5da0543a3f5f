"""The NUL character in texts and tool outputs: stored and given back byte for byte, on SQLite and PostgreSQL.

PostgreSQL's ``jsonb`` and ``text`` cannot hold NUL, yet a client may legitimately send it (binary-ish
shell output in a ``function_call_output``) and a model may write it. Stored JSON escapes it
(``responses_app.models.StoredJSONEncoder``); identifiers (model, response, conversation and item
ids), which are looked up in text columns, are still refused with a 400 naming the ``param``. The
PostgreSQL half needs a server on 127.0.0.1 (skipped without one, failed under ``CI=true``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.api import create, output_text, stream
from tests.support.production import PostgresDatabase, require_services
from tests.support.server import ServerProcess
from tests.support.upstream import FakeUpstream
from tests.support.wire import OpenAIWire
from tests.ws.client import WsClient, assert_valid_turn

WIRE = OpenAIWire()
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
#: Binary-ish tool output: NUL runs, U+FFFF (the storage escape itself) and what looks like it.
TOOL_OUTPUT = "\x7fELF\x02\x01\x01\x00\x00\x00\x00 end \uffff0 \uffff\uffff \\u0000 \x00"
USER_TEXT = "before\x00after"
ARGUMENTS = json.dumps({"command": "head -c 16 /bin/ls\x00"})
MODEL_TEXT = "The file starts with \x00\x00 and \uffff."


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def nul_server(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The embedded server (in-process loops, the session's fake upstream) on SQLite, then PostgreSQL."""
    tmp = tmp_path_factory.mktemp(f"nul-{request.param}")
    env = {
        **upstream_env(fake_upstream.base_url),
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_CONFIG": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    database = None
    if request.param == "postgresql":
        require_services()
        database = PostgresDatabase("or_nul")
        env["DATABASE_URL"] = database.url
        env["DJANGO_SECRET_KEY"] = "tests-nul-secret-key-not-for-production-use"
    process = ServerProcess(env, name=f"nul-{request.param}")
    try:
        process.start()
        process.database = database  # type: ignore[attr-defined]
        process.sqlite_path = tmp / "db.sqlite3"  # type: ignore[attr-defined]
        yield process
    finally:
        process.stop()
        if database is not None:
            database.drop()


@pytest.fixture
def api(nul_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=nul_server.url, timeout=30) as client:
        yield client


def history() -> list[dict]:
    return [
        {"type": "message", "role": "user", "content": USER_TEXT},
        {"type": "function_call", "call_id": "call_nul", "name": "shell", "arguments": ARGUMENTS},
        {"type": "function_call_output", "call_id": "call_nul", "output": TOOL_OUTPUT},
    ]


def upstream_strings(body: dict) -> list[str]:
    """Texts, arguments and outputs of an OpenAI Responses request's input, in order."""
    found = []
    for item in body["input"]:
        if item.get("type", "message") == "message":
            content = item["content"]
            found += [content] if isinstance(content, str) else [part["text"] for part in content]
        elif item["type"] == "function_call":
            found.append(item["arguments"])
        elif item["type"] == "function_call_output":
            found.append(item["output"])
    return found


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_nul_round_trips_byte_for_byte(api, upstream, streamed):
    upstream.queue(WIRE.text(MODEL_TEXT, stream=streamed), WIRE.text("ok", stream=False))
    body = {
        "model": WIRE.model,
        "instructions": "Tools print\x00bytes.",
        "metadata": {"note": "a\x00b"},
        "input": history(),
        "tools": [SHELL],
    }
    first = stream(api, body)[-1]["response"] if streamed else create(api, body)
    assert first["status"] == "completed", first.get("error")
    assert output_text(first) == MODEL_TEXT
    assert first["instructions"] == "Tools print\x00bytes." and first["metadata"] == {"note": "a\x00b"}
    assert upstream_strings(upstream.requests[0].json()) == [USER_TEXT, ARGUMENTS, TOOL_OUTPUT]

    # Stored: the resource, its input items and its event log give back the same strings.
    stored = api.get(f"/v1/responses/{first['id']}").json()
    assert output_text(stored) == MODEL_TEXT and stored["metadata"] == {"note": "a\x00b"}
    items = api.get(f"/v1/responses/{first['id']}/input_items", params={"order": "asc"}).json()["data"]
    assert [i.get("content", [{}])[0].get("text") for i in items if i["type"] == "message"] == [USER_TEXT]
    assert [i["arguments"] for i in items if i["type"] == "function_call"] == [ARGUMENTS]
    assert [i["output"] for i in items if i["type"] == "function_call_output"] == [TOOL_OUTPUT]
    with api.stream("GET", f"/v1/responses/{first['id']}", params={"stream": "true"}) as replay:
        raw = replay.read().decode()
    deltas = [
        json.loads(line[6:])["delta"]
        for line in raw.splitlines()
        if line.startswith("data: {") and '"response.output_text.delta"' in line
    ]
    assert "".join(deltas) == MODEL_TEXT

    # Continued by previous_response_id: the whole chain reaches the upstream exactly.
    second = create(
        api,
        {"model": WIRE.model, "previous_response_id": first["id"], "input": "and\x00then?", "tools": [SHELL]},
    )
    assert second["status"] == "completed"
    assert upstream_strings(upstream.requests[1].json()) == [
        USER_TEXT,
        ARGUMENTS,
        TOOL_OUTPUT,
        MODEL_TEXT,
        "and\x00then?",
    ]


def test_nul_in_conversation_items(api, upstream):
    created = api.post(
        "/v1/conversations",
        json={"metadata": {"k": "v\x00"}, "items": history()},
    )
    assert created.status_code == 200, created.text
    conversation = created.json()
    assert conversation["metadata"] == {"k": "v\x00"}
    items = api.get(f"/v1/conversations/{conversation['id']}/items", params={"order": "asc"}).json()["data"]
    assert [i.get("output") for i in items if i["type"] == "function_call_output"] == [TOOL_OUTPUT]
    upstream.queue(WIRE.text("seen", stream=False))
    answer = create(
        api, {"model": WIRE.model, "conversation": conversation["id"], "input": "go\x00", "tools": [SHELL]}
    )
    assert answer["status"] == "completed"
    assert upstream_strings(upstream.requests[0].json()) == [USER_TEXT, ARGUMENTS, TOOL_OUTPUT, "go\x00"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o\x00", "input": "x"}, "model"),
        ({"model": "gpt-4o", "input": "x", "previous_response_id": "resp_\x00"}, "previous_response_id"),
        ({"model": "gpt-4o", "input": "x", "conversation": "conv_\x00"}, "conversation"),
        ({"model": "gpt-4o", "input": "x", "conversation": {"id": "conv_\x00"}}, "conversation.id"),
        ({"model": "gpt-4o", "input": [{"role": "user", "content": "x", "id": "msg_\x00"}]}, "input[0].id"),
        ({"model": "gpt-4o", "input": [{"type": "item_reference", "id": "msg_\x00"}]}, "input[0].id"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_nul_in_an_identifier_is_a_400_naming_it(api, upstream, body, param):
    error = create(api, body, expect=400)["error"]
    assert (error["param"], error["code"]) == (param, "invalid_string")
    assert "NUL" in error["message"]
    assert upstream.requests == []


def test_nul_in_a_conversation_item_id_is_a_400(api):
    response = api.post(
        "/v1/conversations", json={"items": [{"role": "user", "content": "x", "id": "msg_\x00"}]}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "items[0].id"


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def test_the_stored_rows_hold_the_escape_not_nul(nul_server, api, upstream):
    """Both databases hold the same escaped form (jsonb could not hold a NUL); reads restore it."""
    upstream.queue(WIRE.text(MODEL_TEXT, stream=False))
    first = create(api, {"model": WIRE.model, "input": history(), "tools": [SHELL]})
    sql = "SELECT data FROM responses_app_responseitem WHERE response_id = {} ORDER BY kind, position"
    if nul_server.database is not None:
        rows = nul_server.database.query(sql.format("%s").replace("data", "data::text", 1), first["id"])
    else:
        with sqlite3.connect(nul_server.sqlite_path) as connection:
            rows = connection.execute(sql.format("?"), (first["id"],)).fetchall()
    stored = [s for (text,) in rows for s in strings_in(json.loads(text))]
    assert len(rows) == 4 and not any("\x00" in s for s in stored)
    assert TOOL_OUTPUT.replace("\uffff", "\uffff\uffff").replace("\x00", "\uffff0") in stored
    assert USER_TEXT.replace("\x00", "\uffff0") in stored


@pytest.mark.parametrize(
    "path",
    [
        "/v1/responses/resp_%00",
        "/v1/responses/resp_%00/input_items",
        "/v1/conversations/conv_%00",
        "/v1/conversations/conv_%00/items",
        "/v1/conversations/conv_x/items/msg_%00",
    ],
)
def test_nul_in_a_path_id_is_not_found(api, path):
    response = api.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/v1/responses/resp_x/input_items?after=msg_%00", "/v1/conversations/conv_x/items?after=msg_%00"]
)
def test_nul_in_an_after_cursor_is_a_400(api, path):
    response = api.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "after"


@pytest.mark.parametrize("store", [True, False], ids=["stored", "unstored"])
def test_nul_over_websocket(nul_server, upstream, store):
    """WebSocket turns take the same path: a ``store: false`` chain lives on its connection."""
    upstream.queue(WIRE.text(MODEL_TEXT, stream=True), WIRE.text("ok", stream=True))
    with WsClient(nul_server.url) as ws:
        first = assert_valid_turn(
            ws.turn({"model": WIRE.model, "input": history(), "tools": [SHELL], "store": store})
        )
        assert output_text(first) == MODEL_TEXT
        second = assert_valid_turn(
            ws.turn(
                {
                    "model": WIRE.model,
                    "previous_response_id": first["id"],
                    "input": "and\x00then?",
                    "tools": [SHELL],
                    "store": store,
                }
            )
        )
    assert second["status"] == "completed"
    assert upstream_strings(upstream.requests[1].json()) == [
        USER_TEXT,
        ARGUMENTS,
        TOOL_OUTPUT,
        MODEL_TEXT,
        "and\x00then?",
    ]
