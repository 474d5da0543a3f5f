"""The loop's hot writes on PostgreSQL (``loop/supervision/pg.py``) against a real database.

The statements run on the module's own async connections; a database of this module's own is
migrated by ``manage.py``, and rows are written and read here with psycopg directly. Without
PostgreSQL these tests skip (under ``CI=true`` they fail). The state machine test needs no database.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import models
from django_fsm import TransitionNotAllowed, can_proceed

from responses_app.loop.supervision import pg
from responses_app.models import Response, ResponseItem
from responses_app.services import pg_async
from responses_app.services.responses import FINISH_TRANSITIONS, transition_sources
from responses_app.states import TERMINAL_STATUSES, ResponseStatus
from tests.support.production import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    PostgresDatabase,
    require_services,
)
from tests.support.server import ROOT

TRANSITIONS = ("start", *FINISH_TRANSITIONS.values())


def run(coro: Any) -> Any:
    """Run ``coro`` on a new event loop, whose pool is closed before the loop is."""

    async def main() -> Any:
        try:
            return await coro
        finally:
            await pg_async.close_pool()

    return asyncio.run(main())


@pytest.mark.parametrize("name", TRANSITIONS)
@pytest.mark.parametrize("state", ResponseStatus.values)
def test_sql_transitions_allow_what_the_state_machine_allows(name: str, state: str) -> None:
    sources, target = transition_sources(name)
    response = Response(id="resp_x", status=state)
    method = getattr(response, name)
    assert can_proceed(method) == (state in sources)
    if state in sources:
        method()
        assert response.status == target
    else:
        with pytest.raises(TransitionNotAllowed):
            method()


def test_the_transitions_read_from_the_state_machine() -> None:
    assert transition_sources("start") == ([ResponseStatus.QUEUED], ResponseStatus.IN_PROGRESS)
    for status, name in FINISH_TRANSITIONS.items():
        assert transition_sources(name) == ([ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS], status)


# --------------------------------------------------------------------------- on PostgreSQL


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresDatabase]:
    require_services()
    db = PostgresDatabase("or_pgw")
    try:
        env = {
            **os.environ,
            "DATABASE_URL": db.url,
            "REDIS_URL": "",
            "DJANGO_SETTINGS_MODULE": "openresponses_site.settings",
            "DJANGO_SECRET_KEY": "tests-pg-writes-secret-key-not-for-production",
            "PYTHONPATH": str(ROOT),
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        yield db
    finally:
        db.drop()


@pytest.fixture
def on_pg(database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> PostgresDatabase:
    """The module's statements go to the test database (the site's own is SQLite)."""
    monkeypatch.setattr(
        pg_async,
        "connection_kwargs",
        lambda: {
            "host": POSTGRES_HOST,
            "port": POSTGRES_PORT,
            "user": POSTGRES_USER,
            "dbname": database.name,
            "autocommit": True,
        },
    )
    return database


def store(db: PostgresDatabase, response: Response, items: list[tuple[str, dict[str, Any]]] = ()) -> None:
    """Insert ``response`` (and its ``(kind, data)`` items) as the ORM would."""
    from psycopg.types.json import Jsonb

    fields = Response._meta.concrete_fields
    values = []
    for field in fields:
        value = getattr(response, field.attname)
        values.append(Jsonb(value) if isinstance(field, models.JSONField) and value is not None else value)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    db.query(f"INSERT INTO responses_app_response ({columns}) VALUES ({marks}) RETURNING id", *values)
    for position, (kind, data) in enumerate(items):
        db.query(
            "INSERT INTO responses_app_responseitem (response_id, kind, position, item_id, item_type, data) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            response.id,
            kind,
            position,
            data.get("id") or "",
            data["type"],
            Jsonb(data),
        )


def new_response(status: str = ResponseStatus.QUEUED, **fields: Any) -> Response:
    now = time.time()
    values = {
        "id": f"resp_pgw{time.time_ns()}",
        "model": "mock-1",
        "provider": "mock",
        "params": {"input": "hi"},
        "created_at": now - 1,
        "heartbeat_at": now - 1,
        "request_id": "req_pgw",
        **fields,
    }
    return Response(status=status, **values)


def message(text: str, **meta: Any) -> dict[str, Any]:
    item = {
        "type": "message",
        "id": f"msg_{text}",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if meta:
        item["_meta"] = meta
    return item


def status_of(db: PostgresDatabase, response_id: str) -> str:
    return db.query("SELECT status FROM responses_app_response WHERE id = %s", response_id)[0][0]


@pytest.mark.parametrize("state", ResponseStatus.values)
def test_start_applies_only_from_the_states_the_state_machine_allows(
    on_pg: PostgresDatabase, state: str
) -> None:
    response = new_response(state)
    store(on_pg, response, [("input", message("hello"))])

    loaded = run(pg.start(response.id))

    if state == ResponseStatus.QUEUED:
        assert loaded is not None
        started, context = loaded
        assert started.status == ResponseStatus.IN_PROGRESS and started.attempts == 1
        assert started.params == {"input": "hi"} and started.started_at >= response.created_at
        assert context == [message("hello")]
        assert status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS
    else:
        assert loaded is None
        assert status_of(on_pg, response.id) == state
        assert on_pg.query("SELECT attempts FROM responses_app_response WHERE id = %s", response.id) == [(0,)]


@pytest.mark.parametrize("heartbeat", [True, False])
def test_the_watch_finds_the_cancelled_and_beats_only_the_running(
    on_pg: PostgresDatabase, heartbeat: bool
) -> None:
    """The activity watcher's one statement: the cancelled among the loop's ids (and only those
    ids), and with ``heartbeat`` every running one's heartbeat moved on, nothing else's."""
    rows = {status: new_response(status) for status in ResponseStatus.values}
    other_cancelled = new_response(ResponseStatus.CANCELLED)
    for response in [*rows.values(), other_cancelled]:
        store(on_pg, response)
    ids = [response.id for response in rows.values()] + [f"resp_gone{n}" for n in range(1500)]
    before = time.time()

    cancelled = run(pg.watch(ids, heartbeat=heartbeat))

    assert cancelled == [rows[ResponseStatus.CANCELLED].id]
    beats = dict(on_pg.query("SELECT id, heartbeat_at FROM responses_app_response WHERE id = ANY(%s)", ids))
    for status, response in rows.items():
        moved = beats[response.id] >= before
        assert moved == (heartbeat and status == ResponseStatus.IN_PROGRESS), status


def test_start_loads_the_chain_in_the_model_order(on_pg: PostgresDatabase) -> None:
    first = new_response(ResponseStatus.COMPLETED)
    store(on_pg, first, [("input", message("one")), ("output", message("two"))])
    second = new_response(ResponseStatus.COMPLETED, previous_response_id=first.id, ancestor_ids=[first.id])
    store(
        on_pg,
        second,
        [
            ("input", message("three")),
            ("output", message("lost", abandoned=True)),
            ("output", message("four")),
        ],
    )
    third = new_response(previous_response_id=second.id, ancestor_ids=[first.id, second.id])
    store(on_pg, third, [("input", message("five")), ("input", message("six"))])

    started, context = run(pg.start(third.id))

    assert [item["id"] for item in context] == [
        "msg_one",
        "msg_two",
        "msg_three",
        "msg_four",
        "msg_five",
        "msg_six",
    ]
    assert started.ancestor_ids == [first.id, second.id]


def test_start_reads_the_chain_by_index_not_the_whole_items_table(on_pg: PostgresDatabase) -> None:
    response = new_response()
    store(on_pg, response, [("input", message("hello"))])
    others = new_response(ResponseStatus.COMPLETED)
    store(on_pg, others)
    on_pg.query(  # 2,000 other responses (copies of one), with two items each
        "INSERT INTO responses_app_response SELECT (jsonb_populate_record(NULL::responses_app_response, "
        "to_jsonb(r) || jsonb_build_object('id', r.id || '_' || n))).* "
        "FROM responses_app_response AS r, generate_series(1, 2000) AS n WHERE r.id = %s RETURNING 1",
        others.id,
    )
    on_pg.query(
        "INSERT INTO responses_app_responseitem (response_id, kind, position, item_id, item_type, data) "
        "SELECT r.id, 'output', p, '', 'message', '{}'::jsonb FROM responses_app_response AS r, "
        "generate_series(0, 1) AS p WHERE r.id LIKE %s RETURNING 1",
        others.id + "_%",
    )
    sources, target = transition_sources("start")
    params = {"ids": ["resp_absent"], "target": target, "now": time.time(), "sources": sources}

    with on_pg._connect(on_pg.name) as conn:
        conn.execute("ANALYZE responses_app_responseitem")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + pg._start_statement(), params))

    assert "responses_app_responseitem" in plan
    assert "Seq Scan on responses_app_responseitem" not in plan, plan


def test_starts_of_one_moment_go_in_one_statement(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts waiting together share a statement; each gets its own response and context, an id
    started twice is started once, and one that is not queued is left alone."""
    queued = [new_response(), new_response(), new_response()]
    for number, response in enumerate(queued):
        store(on_pg, response, [("input", message(f"m{number}"))])
    cancelled = new_response(ResponseStatus.CANCELLED)
    store(on_pg, cancelled)
    statements: list[list[str]] = []
    real = pg._start_rows

    async def counted(ids: list[str]) -> dict[str, tuple]:
        statements.append(ids)
        return await real(ids)

    async def all_at_once() -> list[Any]:
        ids = [r.id for r in queued] + [queued[0].id, cancelled.id]
        return await asyncio.gather(*(pg.start(i) for i in ids))

    monkeypatch.setattr(pg, "_start_rows", counted)
    results = run(all_at_once())

    assert len(statements) == 1 and sorted(statements[0]) == sorted({r.id for r in queued} | {cancelled.id})
    for number, (response, loaded) in enumerate(zip(queued, results, strict=False)):
        started, context = loaded
        assert started.id == response.id and started.status == ResponseStatus.IN_PROGRESS
        assert context == [message(f"m{number}")]
        assert status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS
    assert results[3] is None and results[4] is None  # the second start of an id; a cancelled one
    assert status_of(on_pg, cancelled.id) == ResponseStatus.CANCELLED
    assert on_pg.query("SELECT attempts FROM responses_app_response WHERE id = %s", queued[0].id) == [(1,)]


def test_a_thread_starts_a_response_on_the_threads_pool(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task thread's start (``start_sync``): the same statement as the loop's, on the process's
    pool of synchronous connections, planned for its values each time (not prepared); once only;
    and after the connections dropped, again on a fresh one."""
    monkeypatch.setattr(pg, "available", lambda: True)  # (the site's own database is SQLite)
    first, second = new_response(), new_response()
    store(on_pg, first, [("input", message("hello"))])
    store(on_pg, second, [("input", message("again"))])
    try:
        loaded = pg.start_sync(first.id)
        twice = pg.start_sync(first.id)
        prepared = pg_async.run_sync(
            lambda cursor: cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'WITH started AS%%'"
            ).fetchone()[0]
        )
        on_pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            on_pg.name,
        )
        after_drop = pg.start_sync(second.id)
    finally:
        pg_async.close_thread_pool()

    started, context = loaded
    assert started.id == first.id and started.status == ResponseStatus.IN_PROGRESS and started.attempts == 1
    assert context == [message("hello")]
    assert twice is None
    assert prepared == 0
    assert after_drop is not None and after_drop[1] == [message("again")]
    assert status_of(on_pg, first.id) == status_of(on_pg, second.id) == ResponseStatus.IN_PROGRESS
    assert on_pg.query("SELECT attempts FROM responses_app_response WHERE id = %s", first.id) == [(1,)]


def test_the_reader_reads_stored_events_on_the_event_loops_connections(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader's store read goes to this event loop's PostgreSQL connections, not the ORM's
    sync thread, and returns the events after the given one, in order, payloads verbatim."""
    from responses_app.events import reader

    response = new_response(ResponseStatus.IN_PROGRESS)
    store(on_pg, response)
    events = [(response.id, n, f"type.{n}", '{"n": %d,  "x":"é"}' % n) for n in (2, 0, 3, 1)]
    run(pg.insert_events(events))
    monkeypatch.setattr(pg_async, "available", lambda alias="default": True)

    async def orm(*args: Any) -> list:
        raise AssertionError("the ORM path was taken")

    monkeypatch.setattr(reader, "_events_after_orm", orm)

    assert run(reader._events_after(response.id, 0)) == [
        (1, "type.1", '{"n": 1,  "x":"é"}'),
        (2, "type.2", '{"n": 2,  "x":"é"}'),
        (3, "type.3", '{"n": 3,  "x":"é"}'),
    ]
    assert run(reader._events_after(response.id, 3)) == []


def test_events_are_stored_once_with_their_payload_verbatim(on_pg: PostgresDatabase) -> None:
    response = new_response(ResponseStatus.IN_PROGRESS)
    store(on_pg, response)
    nul = json.dumps({"type": "response.output_text.delta", "delta": "a\x00b"})

    async def write() -> None:
        await pg.insert_events([(response.id, 0, "response.created", '{"a": 1,  "b":"é"}')])
        await pg.insert_events(
            [
                (response.id, 0, "response.created", '{"other": true}'),
                (response.id, 1, "response.output_text.delta", nul),
            ]
        )

    run(write())

    rows = on_pg.query(
        "SELECT sequence_number, type, payload FROM responses_app_responseevent WHERE response_id = %s "
        "ORDER BY sequence_number",
        response.id,
    )
    assert rows == [(0, "response.created", '{"a": 1,  "b":"é"}'), (1, "response.output_text.delta", nul)]


def finish_args(response: Response, status: str) -> dict[str, Any]:
    return {
        "response": response,
        "status": status,
        "output": [{"type": "message", "id": "msg_out", "role": "assistant", "content": []}],
        "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        "error": {"code": "server_error", "message": "x"},
        "incomplete_details": {"reason": "max_output_tokens"},
        "first_token_at": response.created_at + 0.5,
        "iterations": 1,
        "wire_log": lambda: [{"request": {}}],
        "events": [(2, "response.output_text.delta", '{"d":1}'), (3, "response.completed", '{"t":2}')],
    }


@pytest.mark.parametrize("status", sorted(FINISH_TRANSITIONS))
def test_finish_stores_everything_in_one_statement(on_pg: PostgresDatabase, status: str) -> None:
    response = new_response(ResponseStatus.IN_PROGRESS)
    store(on_pg, response)

    won = run(pg.finish(**finish_args(response, status)))

    assert won == status and response.status == status and response.is_finished
    row = on_pg.query(
        "SELECT status, usage, error, incomplete_details, iterations, wire_log, completed_at "
        "FROM responses_app_response WHERE id = %s",
        response.id,
    )[0]
    assert row[:3] == (
        status,
        {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        {"code": "server_error", "message": "x"} if status == "failed" else None,
    )
    assert row[3] == ({"reason": "max_output_tokens"} if status == "incomplete" else None)
    assert row[4:6] == (1, [{"request": {}}]) and row[6] == response.completed_at
    assert on_pg.query(
        "SELECT kind, position, item_id, item_type FROM responses_app_responseitem WHERE response_id = %s",
        response.id,
    ) == [(ResponseItem.Kind.OUTPUT, 0, "msg_out", "message")]
    assert on_pg.query(
        "SELECT sequence_number, payload FROM responses_app_responseevent WHERE response_id = %s ORDER BY 1",
        response.id,
    ) == [(2, '{"d":1}'), (3, '{"t":2}')]
    usage = on_pg.query(
        "SELECT status, input_tokens, output_tokens, key_name, iterations, first_token_seconds, error_code "
        "FROM responses_app_usagerecord WHERE response_id = %s",
        response.id,
    )
    assert usage == [
        (status, 3, 5, "anonymous", 1, pytest.approx(0.5), "server_error" if status == "failed" else "")
    ]


def test_a_queued_finish_builds_its_wire_log_only_at_its_turn(on_pg: PostgresDatabase) -> None:
    """Finishes beyond FINISHES_IN_FLIGHT wait for a turn holding a function, not the built log."""
    response = new_response(ResponseStatus.IN_PROGRESS)
    store(on_pg, response)
    built: list[str] = []

    def wire_log() -> list[dict[str, Any]]:
        built.append("built")
        return [{"request": {}, "response": "at its turn"}]

    async def main() -> str | None:
        slots = pg._finish_slots()
        for _ in range(pg.FINISHES_IN_FLIGHT):  # every turn taken by other finishes
            await slots.acquire()
        finishing = asyncio.ensure_future(
            pg.finish(**{**finish_args(response, ResponseStatus.COMPLETED), "wire_log": wire_log})
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert not finishing.done() and built == []  # queued: nothing built yet
        slots.release()
        return await finishing

    assert run(main()) == ResponseStatus.COMPLETED
    assert built == ["built"]
    assert on_pg.query("SELECT wire_log FROM responses_app_response WHERE id = %s", response.id) == [
        ([{"request": {}, "response": "at its turn"}],)
    ]


@pytest.mark.parametrize("stored", sorted(TERMINAL_STATUSES))
def test_finish_writes_nothing_when_another_final_state_won(on_pg: PostgresDatabase, stored: str) -> None:
    response = new_response(stored)
    store(on_pg, response)
    loop_copy = new_response(ResponseStatus.IN_PROGRESS, id=response.id, created_at=response.created_at)

    won = run(pg.finish(**finish_args(loop_copy, ResponseStatus.COMPLETED)))

    assert won is None and loop_copy.status == ResponseStatus.IN_PROGRESS
    assert status_of(on_pg, response.id) == stored
    for table in ("responseitem", "responseevent", "usagerecord"):
        assert on_pg.query(
            f"SELECT count(*) FROM responses_app_{table} WHERE response_id = %s", response.id
        ) == [(0,)]


def test_a_conversation_response_finishes_the_orm_way(on_pg: PostgresDatabase) -> None:
    response = new_response(ResponseStatus.IN_PROGRESS, conversation_id="conv_x")
    assert run(pg.finish(**finish_args(response, ResponseStatus.COMPLETED))) is None


def test_statements_reconnect_after_the_connections_dropped(on_pg: PostgresDatabase) -> None:
    response = new_response(ResponseStatus.IN_PROGRESS)
    store(on_pg, response)

    async def write_drop_write() -> None:
        await pg.insert_events([(response.id, 0, "response.created", "{}")])
        on_pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            on_pg.name,
        )
        await pg.insert_events([(response.id, 1, "response.in_progress", "{}")])

    run(write_drop_write())

    assert on_pg.query(
        "SELECT sequence_number FROM responses_app_responseevent WHERE response_id = %s ORDER BY 1",
        response.id,
    ) == [(0,), (1,)]


@pytest.mark.e2e
def test_chains_and_conversations_on_postgresql(database: PostgresDatabase) -> None:
    """The embedded server on PostgreSQL: the model sees the whole chain (one statement at start)
    and a conversation's earlier turns (read the ORM way); every turn finishes stored."""
    import httpx

    from tests.support.server import ServerProcess

    server = ServerProcess(
        {
            "DATABASE_URL": database.url,
            "DJANGO_SECRET_KEY": "tests-pg-writes-secret-key-not-for-production",
            "OPENRESPONSES_DISPATCH": "inline",
            "OPENRESPONSES_API_KEYS": "",
            "OPENRESPONSES_CONFIG": "",
            "REDIS_URL": "",
        },
        name="pg-writes-server",
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            previous = None
            for turn in (1, 2, 3):
                body = {"model": "mock-1", "input": f"chain {turn}", "previous_response_id": previous}
                answer = http.post("/v1/responses", json=body).json()
                assert answer["status"] == "completed", answer
                prefix = f"(turn {turn}) " if turn > 1 else ""
                assert answer["output"][0]["content"][0]["text"] == f"{prefix}You said: chain {turn}"
                previous = answer["id"]
            conversation = http.post("/v1/conversations", json={}).json()["id"]
            for turn in (1, 2):
                body = {
                    "model": "mock-1",
                    "input": f"talk {turn}",
                    "conversation": conversation,
                    "stream": True,
                }
                with http.stream("POST", "/v1/responses", json=body) as stream:
                    lines = [line[6:].strip() for line in stream.iter_lines() if line.startswith("data: ")]
                events = [json.loads(data) for data in lines if data != "[DONE]"]
                final = events[-1]
                assert final["type"] == "response.completed", final
                prefix = "(turn 2) " if turn == 2 else ""
                assert (
                    final["response"]["output"][0]["content"][0]["text"] == f"{prefix}You said: talk {turn}"
                )
            items = http.get(f"/v1/conversations/{conversation}/items?order=asc").json()["data"]
            assert len(items) == 4
        status = database.query(
            "SELECT count(*) FROM responses_app_response WHERE status = 'completed' AND model = 'mock-1'"
        )
        assert status[0][0] >= 5
    finally:
        server.stop()


def test_finish_without_output_events_or_first_token(on_pg: PostgresDatabase) -> None:
    """A response that failed before its first token: no output, no events left, no wire log."""
    response = new_response(ResponseStatus.IN_PROGRESS, owner="key:someone")
    store(on_pg, response)
    args = {
        **finish_args(response, ResponseStatus.FAILED),
        "output": [],
        "usage": None,
        "first_token_at": None,
        "wire_log": None,
        "events": [],
    }

    assert run(pg.finish(**args)) == ResponseStatus.FAILED

    assert on_pg.query(
        "SELECT status, usage, first_token_at, wire_log FROM responses_app_response WHERE id = %s",
        response.id,
    ) == [(ResponseStatus.FAILED, None, None, None)]
    assert on_pg.query(
        "SELECT owner, input_tokens, first_token_seconds, error_code FROM responses_app_usagerecord "
        "WHERE response_id = %s",
        response.id,
    ) == [("key:someone", 0, None, "server_error")]


HOT_TABLES = [
    "responses_app_response",
    "responses_app_responseitem",
    "responses_app_responseevent",
    "responses_app_usagerecord",
    "responses_app_conversation",
    "responses_app_conversationitem",
]


def test_every_response_write_maintains_only_indexes_queries_use(database: PostgresDatabase) -> None:
    """Each index costs every INSERT (and every UPDATE of an indexed column, so every start and
    finish): no ``_like`` index (varchar_pattern_ops, for LIKE 'prefix%', which no query makes;
    Django adds one beside a CharField with db_index=True: index those in Meta.indexes) and no
    single-column index on a column another index of the table leads with."""
    rows = database.query(
        "SELECT t.relname, i.relname, pg_get_indexdef(i.oid), "
        "ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n)::text[], "
        "x.indpred IS NOT NULL "
        "FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
        "JOIN pg_class AS t ON t.oid = x.indrelid WHERE t.relname = ANY(%s)",
        HOT_TABLES,
    )
    assert {table for table, *_ in rows} == set(HOT_TABLES)
    assert [name for _, name, definition, _, _ in rows if "pattern_ops" in definition] == []
    # (A partial index serves only its own condition's queries: (owner, idempotency_key) does not
    # replace the index on owner.)
    leading = {
        (table, columns[0]) for table, _, _, columns, partial in rows if len(columns) > 1 and not partial
    }
    redundant = [
        name
        for table, name, definition, columns, _ in rows
        if columns and len(columns) == 1 and (table, columns[0]) in leading and "UNIQUE" not in definition
    ]
    assert redundant == []
    # The kept ones queries use: the reaper's scan, owner-scoped listings, chains, item lookups.
    columns_indexed = {(table, tuple(columns)) for table, _, _, columns, _ in rows}
    for needed in [
        ("responses_app_response", ("status", "heartbeat_at")),
        ("responses_app_response", ("owner",)),
        ("responses_app_response", ("previous_response_id",)),
        ("responses_app_response", ("request_id",)),
        ("responses_app_responseitem", ("item_id",)),
        ("responses_app_responseevent", ("response_id", "sequence_number")),
        ("responses_app_usagerecord", ("owner", "day")),
    ]:
        assert needed in columns_indexed


def test_a_carried_start_stores_what_the_start_would_read_back(on_pg: PostgresDatabase) -> None:
    """A loop whose message carried its response starts it with one UPDATE that reads nothing
    back: once only, and the response it runs with is the row the ordinary start returns."""
    from responses_app.loop.supervision.dispatch import carried_start, response_from_carried

    carried_one, ordinary_one = new_response(), new_response()
    for response in (carried_one, ordinary_one):
        store(on_pg, response, [("input", message("hi"))])
    text = carried_start(carried_one, [message("hi")])
    assert text is not None
    queued, context = response_from_carried(text)
    now = time.time()
    started = pg.carried_started(queued, now)

    async def both() -> tuple[Any, ...]:
        first = await pg.start_carried(carried_one.id, now)
        again = await pg.start_carried(carried_one.id, now)
        return first, again, await pg.start(ordinary_one.id)

    first, again, (ordinary, ordinary_context) = run(both())
    assert first == 1 and again is None
    assert context == ordinary_context == [message("hi")]
    row = on_pg.query(
        "SELECT status, started_at, heartbeat_at, attempts FROM responses_app_response WHERE id = %s",
        carried_one.id,
    )[0]
    assert row == (started.status, started.started_at, started.heartbeat_at, started.attempts)
    for (
        field
    ) in Response._meta.concrete_fields:  # the same as the ordinary start's row, but for ids and times
        if field.attname not in {"id", "created_at", "started_at", "heartbeat_at", "request_id"}:
            assert getattr(started, field.attname) == getattr(ordinary, field.attname), field.name
    with pytest.raises(ValueError):  # a carried response that is not queued is not started from it
        pg.carried_started(started, now)


def _create_holding_its_lock(db: PostgresDatabase, response: Response, *, lock_first: bool = True) -> Any:
    """A create's transaction: the response's row inserted with its start lock taken, not
    committed (the caller ends it). ``lock_first=False``: the lock is left to the create's own
    statement's shape (``RETURNING ..., start_lock``)."""
    import psycopg

    from responses_app.services.responses import start_lock

    conn = psycopg.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname=db.name)
    if lock_first:
        conn.execute(f"SELECT {start_lock('%s')}", [response.id])
    fields = Response._meta.concrete_fields
    from psycopg.types.json import Jsonb

    values = [
        Jsonb(v) if isinstance(f, models.JSONField) and v is not None else v
        for f, v in ((f, getattr(response, f.attname)) for f in fields)
    ]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    returning = "" if lock_first else f" RETURNING id, {start_lock('id')}"
    conn.execute(
        f"INSERT INTO responses_app_response ({columns}) VALUES ({', '.join(['%s'] * len(fields))}){returning}",
        values,
    )
    return conn


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_carried_start_waits_for_the_create_that_holds_its_lock(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """The loop's message may reach a worker before the create is committed: its start waits for
    the create's transaction, then starts the response, or finds none if the create rolled back."""
    monkeypatch.setattr(pg, "CREATE_WAITS", (0.01, 0.02))
    response = new_response()
    create = _create_holding_its_lock(on_pg, response)

    async def scenario() -> tuple[bool, int | None]:
        starting = asyncio.ensure_future(pg.start_carried(response.id, time.time()))
        await asyncio.sleep(0.3)
        waited = not starting.done()
        getattr(create, outcome)()
        return waited, await starting

    try:
        waited, attempts = run(scenario())
    finally:
        create.close()
    assert waited
    if outcome == "commit":
        assert attempts == 1 and status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS
    else:
        assert attempts is None
        assert not on_pg.query("SELECT 1 FROM responses_app_response WHERE id = %s", response.id)


def test_a_carried_start_looks_again_for_a_create_not_yet_stored(on_pg: PostgresDatabase) -> None:
    """A start that took the lock before the create did (its statement still on its way) finds
    no row; it looks again and starts the response once it is stored."""
    response = new_response()

    async def scenario() -> int | None:
        starting = asyncio.ensure_future(pg.start_carried(response.id, time.time()))
        await asyncio.sleep(0.05)
        assert not starting.done()
        await asyncio.to_thread(store, on_pg, response)
        return await starting

    assert run(scenario()) == 1
    assert status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS


def test_a_message_sent_as_the_create_goes_out_starts_its_response(on_pg: PostgresDatabase) -> None:
    """``aresponse_insert(sending=...)``: a carried start made as soon as ``sending`` resolves
    (the loop's message sent as the create's statement goes out) starts the response once it is
    committed, and never before: the statement holds the start lock until its commit."""
    from responses_app.services.responses import aresponse_insert

    response = new_response()

    async def scenario() -> tuple[bool, int | None]:
        sending = asyncio.get_running_loop().create_future()

        async def message_arrives() -> int | None:
            assert await sending
            return await pg.start_carried(response.id, time.time())

        worker = asyncio.ensure_future(message_arrives())
        await aresponse_insert(response=response, items=[message("hi")], sending=sending)
        return sending.result(), await worker

    assert run(scenario()) == (True, 1)
    assert status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS
    items = on_pg.query("SELECT data FROM responses_app_responseitem WHERE response_id = %s", response.id)
    assert [row[0] for row in items] == [message("hi")]


def test_the_create_statement_holds_the_start_lock_until_it_commits(on_pg: PostgresDatabase) -> None:
    """Inside a transaction that has not committed yet, the create's own statement holds the
    response's start lock: another session cannot take it."""
    import psycopg

    from responses_app.services.responses import _insert_statement, start_lock

    sql, _ = _insert_statement()
    assert start_lock('"id"') in sql
    response = new_response()
    create = _create_holding_its_lock(on_pg, response, lock_first=False)
    try:
        with psycopg.connect(
            host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname=on_pg.name, autocommit=True
        ) as other:
            probe = start_lock("%s").replace("pg_advisory_xact_lock", "pg_try_advisory_lock")
            assert other.execute(f"SELECT {probe}", [response.id]).fetchone() == (False,)
            create.commit()
            assert other.execute(f"SELECT {probe}", [response.id]).fetchone() == (True,)
    finally:
        create.close()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_start_on_a_task_thread_waits_for_the_create_that_holds_its_lock(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """Under a burst a worker starts its responses on its task threads (``runner.start_now``), and
    a message may arrive before its create is committed: the start finds no row, waits for the
    create's transaction, and starts the response once committed (none if it rolled back)."""
    import threading

    from responses_app.loop import runner

    monkeypatch.setattr(pg, "available", lambda: True)  # (the site's own database is SQLite)
    monkeypatch.setattr(pg, "enabled", lambda: True)
    monkeypatch.setattr(pg, "CREATE_WAITS", (0.01, 0.02))
    monkeypatch.setattr(runner, "_load", lambda response_id: None)  # (the ORM's way: SQLite here)
    response = new_response()
    create = _create_holding_its_lock(on_pg, response)
    timer = threading.Timer(0.3, getattr(create, outcome))
    began = time.monotonic()
    timer.start()
    try:
        started = runner.start_now(response.id)
    finally:
        timer.join()
        create.close()
        pg_async.close_thread_pool()
    assert time.monotonic() - began >= 0.3
    if outcome == "commit":
        assert started is not None and started.id == response.id and started.attempts == 1
        assert status_of(on_pg, response.id) == ResponseStatus.IN_PROGRESS
    else:
        assert started is None


def test_a_start_on_the_loop_waits_for_a_create_not_yet_run(
    on_pg: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's own start (``pg.start`` then ``pg.wait_stored``) of a response whose create had
    not reached PostgreSQL when its message arrived: it looks again until the row is there."""
    from responses_app.loop import runner
    from responses_app.services.responses import aresponse_insert

    monkeypatch.setattr(pg, "enabled", lambda: True)  # (the site's own database is SQLite)
    response = new_response()

    async def scenario() -> Any:
        starting = asyncio.ensure_future(runner._start(response.id))
        await asyncio.sleep(0.05)
        assert not starting.done()
        await aresponse_insert(response=response, items=[message("late")])  # (the create, late)
        return await starting

    with_context = run(scenario())
    assert with_context is not None
    started, context = with_context
    assert started.id == response.id and context == [message("late")]
