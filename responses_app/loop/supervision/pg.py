"""The loop's hot writes on PostgreSQL: prepared statements on async connections of its own event loop.

Starting a response, its event batches and its finish run here, on the event loop's pool of psycopg
``AsyncConnection`` (``services.pg_async``; the worker's loop host, or the serving process's loop): no
thread hop per write, which under load also waits for the GIL. Each step is one round trip:

- start: the state machine's conditional UPDATE (``queued → in_progress``) with the loop's
  context read in the same statement;
- events: one INSERT per batch (the rows as one JSON parameter, as on the thread path);
- finish: one statement — the final status through the state machine's conditional UPDATE, and
  only if it applied, the last events, the output items and the usage row — then the limiter and
  the metrics in one pipelined Redis round trip.

The SQL of every transition takes its allowed source statuses from the django-fsm definitions
(``services.responses.transition_sources``). Whatever these statements do not cover goes the
ORM way on the loop-database threads (``db.run_db``), with the same semantics as before: a start
that did not apply (cancelled before it started, taken by another worker), a finish that lost to
a cancel or the reaper (the status is read again and kept), a conversation to append to, a
context with a conversation prefix. SQLite (the embedded default) always goes that way.

A dropped connection (PostgreSQL restarted) is noticed by the failing statement: the pool checks
its idle connections and the statement runs once more on a fresh one.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections

from responses_app.gateway.usage import aresponse_settled, cached_key_name, key_name, priced, usage_row
from responses_app.models import Response, ResponseEvent, ResponseItem, UsageRecord
from responses_app.selectors import context_from_rows, response_context_items
from responses_app.services.pg_async import available, run, run_sync
from responses_app.services.responses import (
    FINISH_TRANSITIONS,
    pg_events_insert,
    pg_events_rows,
    pg_events_select,
    pg_table,
    start_lock,
    transition_sources,
)
from responses_app.states import ResponseStatus

logger = logging.getLogger(__name__)
T = TypeVar("T")


@functools.cache
def enabled() -> bool:
    """True when the database is PostgreSQL: the loop's hot writes then go through this module."""
    return connections["default"].vendor == "postgresql"


# --------------------------------------------------------------------------- the statements


@functools.cache
def _response_columns() -> tuple[list[str], str]:
    fields = Response._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(f'"{f.column}"' for f in fields)


@functools.cache
def _start_statement() -> str:
    responses, items = pg_table(Response), pg_table(ResponseItem)
    _, columns = _response_columns()
    # The transition, then from the row it returns: the items of the response and of every
    # earlier response of its chain, and whether the chain began in a conversation (whose items
    # then come first: the ORM reads those). The chain's ids as one array: an index scan of the
    # items (``id = x OR id IN (subquery)`` made PostgreSQL read the whole items table).
    return (
        f"WITH started AS (UPDATE {responses} SET status = %(target)s, started_at = %(now)s, "
        "heartbeat_at = %(now)s, attempts = attempts + 1 "
        f"WHERE id = ANY(%(ids)s::text[]) AND status = ANY(%(sources)s::text[]) RETURNING {columns}) "
        "SELECT started.*, "
        "(SELECT json_agg(json_build_array(i.response_id, i.kind, i.position, i.data)) "
        f"FROM {items} AS i WHERE i.response_id = ANY(array_prepend(started.id::text, "
        "ARRAY(SELECT jsonb_array_elements_text(started.ancestor_ids))))), "
        f"(SELECT root.conversation_id FROM {responses} AS root "
        "WHERE root.id = coalesce(started.ancestor_ids->>0, started.id)) "
        "FROM started"
    )


class _Starts:
    """The starts waiting on one event loop, sent together: one statement for all of them.

    A burst of responses (thousands of streams opened at once) otherwise costs a round trip and
    a pooled connection per start, queued behind the loops' event INSERTs and finishes: starts
    then trickled at a few per second while the queue grew. Starts that arrive while a statement
    is under way go into the next one.
    """

    def __init__(self) -> None:
        self.pending: dict[str, list[asyncio.Future]] = {}
        self.task: asyncio.Task | None = None

    def row(self, response_id: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.setdefault(response_id, []).append(future)
        if self.task is None:
            self.task = loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, {}
                try:
                    rows = await _start_rows(list(batch))
                except BaseException as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for response_id, futures in batch.items():
                    for future in futures:  # (the same id twice: only one call started it)
                        if not future.done():
                            future.set_result(rows.pop(response_id, None))
        finally:
            self.task = None


_starts: dict[asyncio.AbstractEventLoop, _Starts] = {}


async def _start_rows(ids: list[str]) -> dict[str, tuple]:
    """queued → in_progress for every response of ``ids`` that is queued: its row, by id."""
    sources, target = transition_sources("start")
    params = {"ids": ids, "target": target, "now": time.time(), "sources": sources}
    sql = _start_statement()
    position = _response_columns()[0].index("id")

    async def work(cursor: Any) -> list[tuple]:
        await cursor.execute(sql, params, prepare=True)
        return await cursor.fetchall()

    return {row[position]: row for row in await run(work)}


async def start(response_id: str) -> tuple[Response, list[dict[str, Any]]] | None:
    """queued → in_progress and the loop's context, in one statement (shared by the starts of
    the moment on this event loop, see :class:`_Starts`).

    None when this call did not start it: the caller then goes the ORM way, which reads the
    response again and knows what to do (a cancelled one still gets its terminal event).
    """
    loop = asyncio.get_running_loop()
    starts = _starts.get(loop)
    if starts is None:
        for gone in [other for other in _starts if other.is_closed()]:
            del _starts[gone]
        starts = _starts[loop] = _Starts()
    row = await starts.row(response_id)
    if row is None:
        return None
    response, context = _loaded(row)
    if context is None:
        # Started: the conversation's items come first (rare on this path: the ORM reads them).
        from responses_app.loop.supervision.db import run_db

        return response, await run_db(response_context_items, response=response)
    return response, context


@functools.cache
def _start_only_statement() -> str:
    return (
        f"UPDATE {pg_table(Response)} SET status = %(target)s, started_at = %(now)s, "
        "heartbeat_at = %(now)s, attempts = attempts + 1 "
        "WHERE id = %(id)s AND status = ANY(%(sources)s::text[]) RETURNING attempts"
    )


def carried_started(response: Response, now: float) -> Response:
    """The queued ``response`` a message carried (``dispatch.carried_start``) as
    :func:`start_carried` stores it started at ``now``: what :func:`start` would read back."""
    sources, target = transition_sources("start")
    if response.status not in sources:
        raise ValueError(f"a carried response is {response.status}, not startable")
    names, _ = _response_columns()
    values = {name: getattr(response, name) for name in names}
    values.update(status=target, started_at=now, heartbeat_at=now, attempts=(values["attempts"] or 0) + 1)
    # (made from the row as stored: the state machine's initial state is the started one)
    return Response.from_db("default", names, [values[name] for name in names])


#: How long a start looks again for a response whose create has not been stored yet (seconds
#: between looks, 7.9 s in all, :func:`wait_stored`): the loop's message goes out as the create's
#: statement does (``flows._admit_and_start``), and that statement may reach PostgreSQL, or be
#: run there, after the message reached this worker. The statement's lock
#: (``services.responses.start_lock``) makes a start wait for its commit once it runs; these
#: looks are for a start that came first.
CREATE_WAITS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0)


async def start_carried(response_id: str, now: float) -> int | None:
    """queued → in_progress at ``now``, reading nothing back (the loop has the response and its
    context from its message already); the attempts stored, None when this call did not start it.

    The message may have been sent while the create was still being stored: the start first
    takes the response's start lock, which the create's statement holds until it commits, then
    runs its conditional UPDATE, which then sees the committed row — both in one transaction sent
    as one message (one round trip). A response that is not there at all (its create not yet
    run, or rolled back) is waited for (:func:`wait_stored`); then the start did not apply. The
    upstream request goes on meanwhile; nothing of the loop is stored or sent."""
    sources, target = transition_sources("start")
    statement = _carried_start_statement(response_id, target, now, sources)

    async def work(cursor: Any) -> tuple | None:
        await cursor.execute(statement)
        _to_result(cursor, "attempts")
        return await cursor.fetchone()

    row = await run(work)
    if row is None and await wait_stored(response_id):  # (its create had not run yet)
        row = await run(work)
    return None if row is None else row[0]


def _to_result(cursor: Any, column: str) -> None:
    """Move ``cursor`` (sync or async) to the result of a several-statement message whose first
    column is ``column``."""
    while cursor.description is None or cursor.description[0].name != column:
        if not cursor.nextset():
            raise RuntimeError(f"no result with a column {column!r}")


def _carried_start_statement(response_id: str, target: str, now: float, sources: list[str]) -> Any:
    """The start lock and the conditional UPDATE in one transaction, as one simple-protocol
    message (its values as quoted literals: only that protocol takes several statements).

    The UPDATE must be a statement of its own, after the lock: it takes its snapshot as it begins
    (READ COMMITTED), so it sees the row the create committed while the lock was awaited."""
    from psycopg import sql

    values = {
        "id": sql.Literal(response_id),
        "target": sql.Literal(target),
        "now": sql.Literal(now),
        "sources": sql.Literal(list(sources)),
    }
    update = sql.SQL(_start_only_statement().replace("%(", "{").replace(")s", "}")).format(**values)
    lock = sql.SQL(start_lock("{id}")).format(**values)
    return sql.SQL("BEGIN; SELECT {lock}; {update}; COMMIT").format(lock=lock, update=update)


def _stored_statement(response_id: str) -> Any:
    """The response's start lock, then whether it is stored: in one transaction, one message
    (its value a quoted literal: only the simple protocol takes several statements). The lock is
    released at once: taking it only waits for a create that holds it to commit or roll back."""
    from psycopg import sql

    found = sql.SQL(f"SELECT count(*) AS stored FROM {pg_table(Response)} WHERE id = {{id}}")
    lock = sql.SQL(start_lock("{id}"))
    return sql.SQL("BEGIN; SELECT {lock}; {found}; COMMIT").format(
        lock=lock.format(id=sql.Literal(response_id)), found=found.format(id=sql.Literal(response_id))
    )


async def wait_stored(response_id: str) -> bool:
    """For a start that found no response: wait for the create that may be storing it (its loop's
    message may go out before the create commits, ``flows._admit_and_start``), looking again for
    a few seconds (:data:`CREATE_WAITS`). True once it is stored; False if it never was
    (its create rolled back) or is gone (deleted)."""
    statement = _stored_statement(response_id)

    async def work(cursor: Any) -> bool:
        await cursor.execute(statement)
        _to_result(cursor, "stored")
        return bool((await cursor.fetchone())[0])

    for pause in (*CREATE_WAITS, None):
        if await run(work):
            return True
        if pause is None:
            return False
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def wait_stored_sync(response_id: str) -> bool:
    """:func:`wait_stored` on the calling thread (a worker's task thread), on the threads' pool;
    False at once where that pool is not used (inside a transaction of Django's: tests)."""
    if not available():
        return False
    statement = _stored_statement(response_id)

    def work(cursor: Any) -> bool:
        cursor.execute(statement)
        _to_result(cursor, "stored")
        return bool(cursor.fetchone()[0])

    for pause in (*CREATE_WAITS, None):
        if run_sync(work):
            return True
        if pause is None:
            return False
        time.sleep(pause)
    raise AssertionError("unreachable")


def start_sync(response_id: str) -> tuple[Response, list[dict[str, Any]]] | None:
    """:func:`start` on the calling thread: the same statement and result, on a connection of
    the process's threads' pool (``pg_async.run_sync``); inside a transaction of Django's (tests),
    on Django's connection, which sees its uncommitted rows.

    Not prepared: PostgreSQL plans it for its values each time. Prepared, PostgreSQL's CPU per
    start grew more over three rounds of the benchmark (0.3 → 2.2 ms per stream, against 0.3 →
    0.9 planned each time); its generic plan is the same index scans as the custom one
    (``EXPLAIN EXECUTE`` under ``plan_cache_mode = force_generic_plan``, 50,000 responses), so
    this is a measured difference, not a plan that reads the tables.

    A Celery task starts its response this way before it hands the loop to the worker's loop
    host, so a start never waits for the turns of a host busy with hundreds of streams.
    """
    sources, target = transition_sources("start")
    params = {"ids": [response_id], "target": target, "now": time.time(), "sources": sources}
    sql = _start_statement()
    if available():

        def work(cursor: Any) -> tuple | None:
            cursor.execute(sql, params, prepare=False)
            return cursor.fetchone()

        row = run_sync(work)
    else:
        from psycopg.types.json import JsonbLoader, JsonLoader

        with connections["default"].cursor() as cursor:
            # JSON as Python values, as on this module's own connections (Django's connection loads
            # it as text for its fields to parse; ``from_db`` below does not parse).
            cursor.cursor.adapters.register_loader("jsonb", JsonbLoader)
            cursor.cursor.adapters.register_loader("json", JsonLoader)
            cursor.execute(sql, params)
            row = cursor.fetchone()
    if row is None:
        return None
    response, context = _loaded(row)
    if context is None:
        return response, response_context_items(response=response)
    return response, context


def _loaded(row: tuple) -> tuple[Response, list[dict[str, Any]] | None]:
    """The started response of a start statement's row and its context (None: the chain began
    in a conversation, whose items the ORM reads)."""
    names, _ = _response_columns()
    *values, rows, root_conversation = row
    response = Response.from_db("default", names, values)
    if root_conversation:
        return response, None
    ids = [*(response.ancestor_ids or []), response.id]
    return response, context_from_rows(response_id=response.id, ids=ids, rows=rows or [])


async def insert_events(rows: list[tuple[str, int, str, str]]) -> None:
    """Store event rows ``(response_id, sequence_number, type, payload)`` (rows stored already are skipped)."""
    sql, batch = pg_events_insert(rows)
    now = time.time()

    async def work(cursor: Any) -> None:
        await cursor.execute(sql, (now, batch), prepare=True)

    await run(work)


@functools.cache
def _watch_statement() -> str:
    table = pg_table(Response)
    return (
        f"WITH beat AS (UPDATE {table} SET heartbeat_at = %(now)s WHERE %(beat)s "
        f"AND id = ANY(%(ids)s::text[]) AND status = '{ResponseStatus.IN_PROGRESS}') "
        f"SELECT id FROM {table} WHERE id = ANY(%(ids)s::text[]) AND status = '{ResponseStatus.CANCELLED}'"
    )


async def watch(response_ids: list[str], *, heartbeat: bool) -> list[str]:
    """The ids among ``response_ids`` that were cancelled, and with ``heartbeat`` the running ones
    marked alive, in one prepared statement whose ids are one array parameter.

    The activity watcher asks this of every loop of its event loop twice a second: as an ORM
    ``IN`` of a thousand parameters on the control thread it took 6.9% of a worker's samples with
    1,000 open loops (py-spy; 4.4% in building the ``IN``), and 1.7% this way."""
    params = {"ids": response_ids, "beat": heartbeat, "now": time.time()}
    sql = _watch_statement()

    async def work(cursor: Any) -> list[str]:
        await cursor.execute(sql, params, prepare=True)
        return [row[0] for row in await cursor.fetchall()]

    return await run(work)


@functools.cache
def _finish_statement(payload_column: str) -> str:
    responses, events, items = pg_table(Response), pg_table(ResponseEvent), pg_table(ResponseItem)
    usage = pg_table(UsageRecord)
    usage_columns = list(_usage_fields())
    usage_values = ", ".join(f"%(u_{c})s" for c in usage_columns)
    usage_updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in usage_columns if c != "response_id")
    applied = "WHERE EXISTS (SELECT 1 FROM finished)"
    return (
        f"WITH finished AS (UPDATE {responses} SET status = %(target)s, completed_at = %(completed_at)s, "
        "usage = %(usage)s::jsonb, error = %(error)s::jsonb, incomplete_details = %(incomplete)s::jsonb, "
        "first_token_at = %(first_token_at)s, iterations = %(iterations)s, "
        "wire_log = CASE WHEN %(set_wire_log)s THEN %(wire_log)s::jsonb ELSE wire_log END "
        "WHERE id = %(id)s AND status = ANY(%(sources)s::text[]) RETURNING id), "
        f"last_events AS (INSERT INTO {events} (response_id, sequence_number, type, payload, created_at) "
        f"SELECT * FROM ({pg_events_select(payload_column, '%(completed_at)s', '%(events)s')}) AS e "
        f"{applied} ON CONFLICT DO NOTHING), "
        f"output AS (INSERT INTO {items} (response_id, kind, position, item_id, item_type, data) "
        f"SELECT %(id)s, '{ResponseItem.Kind.OUTPUT}', o.n - 1, coalesce(o.item->>'id', ''), "
        "coalesce(o.item->>'type', ''), o.item "
        f"FROM jsonb_array_elements(%(output)s::jsonb) WITH ORDINALITY AS o(item, n) {applied}), "
        f"usage_row AS (INSERT INTO {usage} ({', '.join(usage_columns)}) SELECT {usage_values} {applied} "
        f"ON CONFLICT (response_id) DO UPDATE SET {usage_updates}) "
        "SELECT count(*) FROM finished"
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def finish(
    *,
    response: Response,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    first_token_at: float | None = None,
    iterations: int = 0,
    wire_log: Callable[[], list[dict[str, Any]] | None] | None = None,
    events: list[tuple[int, str, str]] | None = None,
) -> str | None:
    """``services.response_finish`` for the loop's own running response, in one statement.

    ``wire_log``: a function returning the wire log to store (None: keep the stored one), called
    only at this finish's turn (see :data:`FINISHES_IN_FLIGHT`), as are the statement's other
    large parameters: finishes waiting for their turn hold no copies of them.

    Returns the status stored, or None when the statement did not apply (cancelled or reaped
    meanwhile) or cannot (a conversation to append to, a response finished already): nothing
    was written, and the caller finishes it the ORM way, which reads the status that won.
    """
    if response.is_finished or response.conversation_id:
        return None
    transition = FINISH_TRANSITIONS[ResponseStatus(status)]
    sources, target = transition_sources(transition)
    final = copy.copy(response)
    getattr(final, transition)()  # the state machine, on a copy until the database agrees
    final.completed_at = time.time()
    final.usage = usage
    final.error = error if final.status == ResponseStatus.FAILED else None
    final.incomplete_details = incomplete_details if final.status == ResponseStatus.INCOMPLETE else None
    final.first_token_at = first_token_at
    final.iterations = iterations
    tokens, cost = priced(final)
    name = cached_key_name(final.owner or "")
    if name is None:  # (once a minute per key: its name from the database)
        from responses_app.loop.supervision.db import run_db

        name = await run_db(key_name, final.owner or "")
    row = usage_row(response=final, cost=cost, tokens=tokens, name=name)

    def statement() -> tuple[str, dict[str, Any]]:
        stored_wire_log = wire_log() if wire_log is not None else None
        if stored_wire_log is not None:
            final.wire_log = stored_wire_log
        batch, payload_column = pg_events_rows(
            [(final.id, seq, kind, payload) for seq, kind, payload in events or []]
        )
        params = {
            "id": final.id,
            "target": target,
            "sources": sources,
            "completed_at": final.completed_at,
            "usage": _json(final.usage),
            "error": _json(final.error),
            "incomplete": _json(final.incomplete_details),
            "first_token_at": first_token_at,
            "iterations": iterations,
            "set_wire_log": stored_wire_log is not None,
            "wire_log": _json(stored_wire_log),
            "events": batch,
            "output": json.dumps(output),
            **{f"u_{column}": row[field] for column, field in _usage_fields().items()},
        }
        return _finish_statement(payload_column), params

    async with _finish_slots():
        sql, params = statement()  # (not before: the queued finishes would each hold them)

        async def work(cursor: Any) -> int:
            await cursor.execute(sql, params, prepare=True)
            return (await cursor.fetchone())[0]

        applied = await run(work)
    if not applied:
        return None
    response.__dict__.update(final.__dict__)
    await aresponse_settled(response=response, tokens=tokens, cost=cost)
    return str(response.status)


#: Finish statements in flight at once per event loop. Thousands of streams that began together
#: also end together: unbounded, their finishes took every pooled connection, and the event
#: INSERTs (which every live token waits for: stored before published) and the starts of new
#: responses queued behind them for seconds. A finish waits here instead; the rest of the pool
#: stays free for them.
FINISHES_IN_FLIGHT = 4
_finishes: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _finish_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _finishes.get(loop)
    if slots is None:
        for gone in [other for other in _finishes if other.is_closed()]:
            del _finishes[gone]
        slots = _finishes[loop] = asyncio.Semaphore(FINISHES_IN_FLIGHT)
    return slots


@functools.cache
def _usage_fields() -> dict[str, str]:
    return {f.column: f.name for f in UsageRecord._meta.concrete_fields if f.name != "id"}
