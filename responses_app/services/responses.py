"""Writes: creating, finishing, cancelling and deleting responses. Every front end calls these."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Collection
from typing import Any

from django.db import transaction
from django.db.models import F
from django_fsm import ConcurrentTransition, TransitionNotAllowed

from providers_app.adapters.base import message_text
from providers_app.registry import Route
from responses_app.errors import ApiError, invalid
from responses_app.ids import response_id as new_response_id
from responses_app.models import Conversation, Response, ResponseEvent, ResponseItem, stored_text
from responses_app.selectors import (
    conversation_call_ids,
    input_with_references,
    previous_response_get,
    response_context_items,
)
from responses_app.services.compaction import check_compaction_items
from responses_app.services.conversations import conversation_append_response
from responses_app.states import ResponseStatus
from responses_app.types import CreateRequest

SEALED_HEADERS = "headers_sealed"  # where a stored MCP tool keeps its headers, encrypted


def seal_tool_headers(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every MCP tool's ``headers`` replaced by their sealed form, for storage.

    Background and Celery runs read the stored request, so the headers are kept, but only
    encrypted (their own purpose key); the resource echo shows neither form.
    """
    tools = params.get("tools")
    if not isinstance(tools, list) or not any(isinstance(t, dict) and t.get("type") == "mcp" for t in tools):
        return params
    from providers_app.secrets import MCP_HEADERS, seal_bytes

    stored = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            headers = tool.get("headers")
            tool = {k: v for k, v in tool.items() if k not in {"headers", SEALED_HEADERS}}
            if headers:
                tool[SEALED_HEADERS] = seal_bytes(json.dumps(headers).encode(), MCP_HEADERS)
        stored.append(tool)
    return {**params, "tools": stored}


def _search_text(items: list[dict[str, Any]]) -> str:
    return stored_text("\n".join(message_text(i) for i in items if i.get("type") == "message")[:20000])


def _check_call_ids(items: list[dict[str, Any]], context_call_ids: set[str]) -> None:
    known = set(context_call_ids)
    for index, item in enumerate(items):
        if item.get("type") == "function_call":
            known.add(item["call_id"])
        elif item.get("type") == "function_call_output" and item["call_id"] not in known:
            raise invalid(
                f"No tool call found for function call output with call_id '{item['call_id']}'.",
                f"input[{index}].call_id",
                "unknown_call_id",
            )


def response_create(
    *,
    request: CreateRequest,
    owner: str | None,
    route: Route,
    unstored_ids: Collection[str] = (),
    request_id: str = "",
    start: bool = False,
    idempotency_key: str = "",
) -> Response:
    """Store a new response (status ``queued``) with its input items, ready for the loop.

    ``unstored_ids``: ``store: false`` responses the caller may continue (a WebSocket connection's own).
    ``idempotency_key``: the client's ``Idempotency-Key`` (unique per owner: a second create
    with it raises ``IntegrityError``; see ``response_by_idempotency_key``).
    ``start``: the caller runs the loop in this process at once — store it ``in_progress``
    already and attach the model's context as ``response.context_items`` (saves the loop a
    round trip to the store before its first token).
    """
    response, items = response_prepare(
        request=request,
        owner=owner,
        route=route,
        unstored_ids=unstored_ids,
        request_id=request_id,
        start=start,
        idempotency_key=idempotency_key,
    )
    with transaction.atomic():
        response.save(force_insert=True)
        _store_items(response, ResponseItem.Kind.INPUT, items)
    if start:
        response_attach_context(response=response, items=items)
    return response


def create_reads_store(request: CreateRequest) -> bool:
    """Whether preparing ``request`` reads the store (a chain, a conversation, item references);
    without them :func:`response_prepare` is pure computation."""
    return bool(request.previous_response_id or request.conversation_id or request.item_references)


def response_prepare(
    *,
    request: CreateRequest,
    owner: str | None,
    route: Route,
    unstored_ids: Collection[str] = (),
    request_id: str = "",
    start: bool = False,
    idempotency_key: str = "",
) -> tuple[Response, list[dict[str, Any]]]:
    """The unsaved response of a create and its input items, checked (404s, unknown call ids).

    Reads the store only when :func:`create_reads_store` says so.
    """
    check_compaction_items(request.input_items)
    previous = None
    if request.previous_response_id:
        previous = previous_response_get(
            response_id=request.previous_response_id,
            owner=owner,
            unstored_ids=unstored_ids,
            fields=("id", "ancestor_ids"),
        )
    conversation = _conversation_for(request, owner)
    position = conversation.next_position if conversation is not None else None
    items = input_with_references(items=request.input_items, references=request.item_references, owner=owner)
    ancestors = (list(previous.ancestor_ids or []) + [previous.id]) if previous else []
    if any(i.get("type") == "function_call_output" for i in items):
        context_calls = (
            set(
                ResponseItem.objects.filter(response_id__in=ancestors, item_type="function_call").values_list(
                    "data__call_id", flat=True
                )
            )
            if ancestors
            else set()
        )
        if conversation is not None:
            context_calls |= conversation_call_ids(conversation_id=conversation.id, before=position)
        _check_call_ids(items, context_calls)
    now = time.time()
    response = Response(
        id=new_response_id(),
        model=request.model,
        provider=route.provider,
        upstream_model=route.upstream_model,
        previous_response=previous,
        ancestor_ids=ancestors,
        conversation=conversation,
        conversation_position=position,
        owner=owner or "",
        params=seal_tool_headers(request.params),  # MCP headers never stored in clear
        store=request.store,
        background=request.background,
        stream=request.stream,
        created_at=now,
        heartbeat_at=now,
        search_text=_search_text(items),
        request_id=request_id,
        idempotency_key=idempotency_key,
    )
    if start:
        response.start()
        response.started_at = now
        response.attempts = 1
    return response, items


def response_attach_context(*, response: Response, items: list[dict[str, Any]]) -> None:
    """``response.context_items``: what the model sees (a started create's loop reads no store)."""
    response.context_items = (  # type: ignore[attr-defined]
        response_context_items(response=response)
        if response.ancestor_ids or response.conversation_id
        else list(items)
    )


#: The first key of the transaction-level advisory lock a create takes on its
#: response (the second is the id's ``hashtext``), ``"OR"`` in ASCII: other users of advisory locks
#: in the same database keep their own first key.
START_LOCK_CLASS = 0x4F52


def start_lock(id_sql: str) -> str:
    """The SQL expression that takes the advisory lock of the response whose id is ``id_sql``
    until the end of the transaction.

    The create's statement takes it as it inserts the response's row and holds it until it
    commits (:func:`_insert_statement`), and a worker's carried start
    (``loop/supervision/pg.start_carried``) takes it before its conditional UPDATE: a loop's
    message sent while the create is being stored (``flows._admit_and_start``) then waits for
    the commit instead of missing the row."""
    return f"pg_advisory_xact_lock({START_LOCK_CLASS}, hashtext({id_sql}))"


@functools.cache
def _insert_statement() -> tuple[str, list[Any]]:
    """One statement storing a response and its input items (a data-modifying CTE), and the
    response fields whose values it takes, in order; the items go in as one JSON parameter
    (:func:`_items_parameter`). The response's start lock (:func:`start_lock`) is taken as its
    row is inserted, and held until the statement commits."""
    from django.db import connection

    quote = connection.ops.quote_name
    fields = list(Response._meta.concrete_fields)
    item = ResponseItem._meta
    columns = ", ".join(quote(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    item_columns = ", ".join(
        quote(item.get_field(name).column)
        for name in ("response", "kind", "position", "item_id", "item_type", "data")
    )
    sql = (
        f"WITH r AS (INSERT INTO {quote(Response._meta.db_table)} ({columns}) VALUES ({values}) "
        f"RETURNING {quote(Response._meta.pk.column)} AS id, {start_lock(quote(Response._meta.pk.column))}) "
        f"INSERT INTO {quote(item.db_table)} ({item_columns}) "
        "SELECT r.id, %s, x.ord - 1, x.e->>0, x.e->>1, (x.e->2)::jsonb FROM r, "
        "json_array_elements(%s::json) WITH ORDINALITY AS x(e, ord)"
    )
    return sql, fields


def _items_parameter(items: list[dict[str, Any]]) -> str:
    """The input items as one JSON array of ``[item_id, item_type, data]`` (``data`` as the
    ``data`` field encodes it): one text parameter the server splits, instead of three arrays
    that the driver would escape element by element in Python."""
    encode = ResponseItem._meta.get_field("data").encoder().encode
    return (
        "["
        + ",".join(
            f"[{json.dumps(item.get('id') or '')},{json.dumps(item.get('type', ''))},{encode(item)}]"
            for item in items
        )
        + "]"
    )


@functools.cache
def _preparing_connection() -> Any:
    """A connection object that only prepares values (never connects): ``django.db.connection``
    in a request task makes a ``DatabaseWrapper`` for every task (on an event loop Django keeps
    one per async context), kept while the task's stream lasts: ~1,850 of them with ~1,850
    open streams."""
    from django.db import connections

    return connections.create_connection("default")


async def aresponse_insert(
    *, response: Response, items: list[dict[str, Any]], sending: asyncio.Future[bool] | None = None
) -> None:
    """Store a prepared response and its input items in one round trip from the event loop
    (PostgreSQL, see ``services.pg_async``); committed when it returns.

    ``sending``: resolved True as the statement goes out on its connection (the caller resolves
    it False on a failure before); from then on a carried start waits on the statement's lock.

    A second create with the same ``Idempotency-Key`` raises Django's ``IntegrityError``, as
    :func:`response_create` does. A connection found broken (the database restarted since it
    was last used) is replaced once; if the lost statement had committed after all, the retry
    meets the row by its primary key and counts it as stored.
    """
    import psycopg
    from django.db import IntegrityError

    from responses_app.services.pg_async import cursor_of, pool

    connection = _preparing_connection()
    sql, fields = _insert_statement()
    params = [field.get_db_prep_save(field.pre_save(response, True), connection) for field in fields]
    params += [ResponseItem.Kind.INPUT.value, _items_parameter(items)]
    connections = await pool()
    for attempt in range(2):
        conn = await connections.getconn()  # (and putconn: see ``pg_async.run``)
        try:
            if sending is not None and not sending.done():
                sending.set_result(True)  # (its task runs once this one waits: the statement is out)
            await cursor_of(conn).execute(sql, params)
            break
        except psycopg.errors.UniqueViolation as exc:
            if attempt and exc.diag.constraint_name == _pk_constraint():
                break  # the first attempt committed before its connection broke
            raise IntegrityError(*exc.args) from exc
        except psycopg.IntegrityError as exc:
            raise IntegrityError(*exc.args) from exc
        except psycopg.OperationalError as exc:
            # Retried once: a connection that broke (no server error, or the server's
            # "terminating connection" sent while it sat idle in the pool).
            if attempt or not (conn.broken or exc.sqlstate is None or exc.sqlstate.startswith("57P")):
                raise
        finally:
            await connections.putconn(conn)
        await connections.check()  # the other idle connections broke with it: replaced
    response._state.adding = False
    response._state.db = "default"


@functools.cache
def _pk_constraint() -> str:
    """PostgreSQL's name of the response table's primary key constraint."""
    return f"{Response._meta.db_table}_pkey"


def _conversation_for(request: CreateRequest, owner: str | None) -> Conversation | None:
    """The conversation the request names (visible to ``owner``), else 404 naming ``conversation``."""
    if not request.conversation_id:
        return None
    if request.previous_response_id:
        raise invalid(
            "Mutually exclusive parameters: send either 'previous_response_id' or 'conversation', not both.",
            "conversation",
            "mutually_exclusive_parameters",
        )
    qs = Conversation.objects.filter(id=request.conversation_id)
    if owner is not None:
        qs = qs.filter(owner=owner)
    conversation = qs.only("id", "next_position").first()
    if conversation is None:
        raise ApiError(
            404,
            f"Conversation with id '{request.conversation_id}' not found.",
            param="conversation",
            code="conversation_not_found",
        )
    return conversation


def response_by_idempotency_key(*, owner: str | None, key: str) -> Response | None:
    """The response an earlier create with this ``Idempotency-Key`` made for this owner, if any."""
    return Response.objects.filter(owner=owner or "", idempotency_key=key).first()


def _store_items(response: Response, kind: str, items: list[dict[str, Any]]) -> None:
    """Store ``items`` as the response's input or output rows, in order."""
    ResponseItem.objects.bulk_create(
        [
            ResponseItem(
                response=response,
                kind=kind,
                position=i,
                item_id=item.get("id") or "",
                item_type=item.get("type", ""),
                data=item,
            )
            for i, item in enumerate(items)
        ]
    )


#: The state machine's transition (a method of ``Response``) that ends a response in each final status.
FINISH_TRANSITIONS = {
    ResponseStatus.COMPLETED: "complete",
    ResponseStatus.INCOMPLETE: "mark_incomplete",
    ResponseStatus.FAILED: "fail",
    ResponseStatus.CANCELLED: "cancel",
}


@functools.cache
def transition_sources(name: str) -> tuple[list[str], str]:
    """``(source statuses, target status)`` of the state machine's transition ``name``.

    Read from the django-fsm definitions, so a conditional UPDATE written in SQL
    (``... WHERE status = ANY(sources)``) allows exactly the transitions the model allows.
    """
    meta = getattr(Response, name)._django_fsm
    sources = [state for state in ResponseStatus.values if meta.has_transition(state)]
    found = [meta.get_transition(state) for state in sources]
    targets = {transition.target for transition in found}
    if len(targets) != 1 or any(transition.conditions for transition in found):
        raise ValueError(f"transition {name} is not a plain status change (targets {targets}, or conditions)")
    return sources, str(targets.pop())


def response_start(*, response_id: str) -> tuple[Response | None, bool]:
    """queued → in_progress. Returns the response and whether this call started it.

    No row lock: the state machine's conditional UPDATE (``... WHERE status = 'queued'``) lets
    exactly one of two racing workers win; the other gets the response as the winner left it.
    """
    response = Response.objects.filter(id=response_id).first()
    if response is None or response.status != ResponseStatus.QUEUED:
        return response, False
    response.start()
    response.started_at = response.heartbeat_at = time.time()
    response.attempts += 1
    try:
        response.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    except ConcurrentTransition:
        response.refresh_from_db()
        return response, False
    return response, True


def response_start_at(*, response_id: str, now: float) -> int | None:
    """queued → in_progress at ``now`` for a loop that has the response already (its message
    carried it): the state machine's conditional UPDATE, nothing read back. Returns the attempts
    stored, None when this call did not start it (started, cancelled or deleted already)."""
    sources, target = transition_sources("start")
    with transaction.atomic():
        started = Response.objects.filter(id=response_id, status__in=sources).update(
            status=target, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
        )
        if not started:
            return None
        return Response.objects.filter(id=response_id).values_list("attempts", flat=True).first()


def response_finish(
    *,
    response_id: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    first_token_at: float | None = None,
    iterations: int = 0,
    wire_log: list[dict[str, Any]] | None = None,
    response: Response | None = None,
    events: list[tuple[int, str, str]] | None = None,
    terminal_from: int | None = None,
) -> str:
    """Store the final state through the state machine; returns the status that won.

    A response cancelled meanwhile stays ``cancelled``: its partial output and usage are kept.
    ``response``: the loop's own copy (as it started it), which saves reading the row again;
    the state machine's conditional UPDATE notices when the stored status moved meanwhile.
    ``events``: the response's last events ``(sequence_number, type, payload)``, stored in the
    same transaction; those from ``terminal_from`` on were built for ``status`` and are left
    out when another status won (the caller then builds the right ones).
    """
    if response is None:
        response = Response.objects.get(id=response_id)
    completed_at = time.time()
    with transaction.atomic():
        for _attempt in range(5):
            was_finished = response.is_finished  # (only then can output rows exist: the reaper's)
            stored_status = response.status
            if not was_finished:
                try:
                    getattr(response, FINISH_TRANSITIONS[ResponseStatus(status)])()
                except TransitionNotAllowed:
                    pass
            response.completed_at = completed_at
            response.usage = usage
            response.error = error if response.status == ResponseStatus.FAILED else None
            response.incomplete_details = (
                incomplete_details if response.status == ResponseStatus.INCOMPLETE else None
            )
            response.first_token_at = first_token_at
            response.iterations = iterations
            fields = {
                "completed_at": completed_at,
                "usage": usage,
                "error": response.error,
                "incomplete_details": response.incomplete_details,
                "first_token_at": first_token_at,
                "iterations": iterations,
            }
            if wire_log is not None:
                response.wire_log = fields["wire_log"] = wire_log
            # The transition's conditional UPDATE (what ConcurrentTransitionMixin does, without
            # raising inside the transaction): it applies only if the stored status is still
            # the one this copy was read with.
            if Response.objects.filter(id=response.id, status=stored_status).update(
                status=response.status, **fields
            ):
                break
            response.refresh_from_db()  # cancelled (or reaped) meanwhile: keep that status
        if events:
            if terminal_from is not None and response.status != status:
                events = [event for event in events if event[0] < terminal_from]
            events_insert([(response.id, seq, event_type, payload) for seq, event_type, payload in events])
        if was_finished:
            ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.OUTPUT).delete()
        _store_items(response, ResponseItem.Kind.OUTPUT, output)
        if not was_finished:  # (a second finish must not add the turn to its conversation twice)
            conversation_append_response(response=response, output=output)
    from responses_app.gateway.usage import response_finished

    response_finished(response=response)  # usage and cost, limits settled, metrics (never raises)
    return response.status


def response_cancel(*, response: Response) -> Response:
    """Cancel an unfinished response through the state machine (a finished one is returned as is)."""
    with transaction.atomic():
        locked = Response.objects.select_for_update().get(id=response.id)
        if not locked.is_finished:
            locked.cancel()
            locked.save()
    locked.refresh_from_db()
    return locked


def response_delete(*, response: Response) -> None:
    """Delete a response with its items and events (later responses keep working copies of nothing)."""
    response.delete()


def response_discard_unstarted(*, response_id: str) -> bool:
    """Delete a response no loop has started (still ``queued``) with its items; False if one has."""
    deleted, _ = Response.objects.filter(id=response_id, status=ResponseStatus.QUEUED).delete()
    return bool(deleted)


def responses_heartbeat(*, response_ids: list[str]) -> list[str]:
    """Mark running loops alive; return the ids among them that were cancelled meanwhile."""
    if not response_ids:
        return []
    Response.objects.filter(id__in=response_ids, status=ResponseStatus.IN_PROGRESS).update(
        heartbeat_at=time.time()
    )
    return list(
        Response.objects.filter(id__in=response_ids, status=ResponseStatus.CANCELLED).values_list(
            "id", flat=True
        )
    )


def cancelled_among(*, response_ids: list[str]) -> list[str]:
    if not response_ids:
        return []
    return list(
        Response.objects.filter(id__in=response_ids, status=ResponseStatus.CANCELLED).values_list(
            "id", flat=True
        )
    )


def events_insert(rows: list[tuple[str, int, str, str]]) -> None:
    """Store event rows ``(response_id, sequence_number, type, payload)``; rows already stored are skipped."""
    from django.db import connection

    now = time.time()
    if connection.vendor == "postgresql":
        import psycopg

        sql, batch = pg_events_insert(rows)
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, [now, batch])
        return
    if connection.vendor == "sqlite":
        # One statement (one step of the SQLite engine) for the whole batch: executemany steps
        # once per row and releases and takes the GIL at each step, which starves the event loop.
        table = connection.ops.quote_name(ResponseEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT OR IGNORE INTO {table} (response_id, sequence_number, type, payload, created_at) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), %s FROM json_each(%s)",
                [now, json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
            )
        return
    ResponseEvent.objects.bulk_create(
        [
            ResponseEvent(response_id=rid, sequence_number=seq, type=etype, payload=payload, created_at=now)
            for rid, seq, etype, payload in rows
        ],
        ignore_conflicts=True,
    )


def pg_events_rows(rows: list[tuple[str, int, str, str]]) -> tuple[str, str]:
    """PostgreSQL: event rows as one JSON parameter, and the SQL expression of a row's payload.

    One parameter for the whole batch, bound server-side (no quoting of the text by the driver,
    no model instance per row). The payloads are JSON already: they go in as values and come out
    verbatim (the json type keeps its text).
    """
    batch = (
        "["
        + ",".join(
            f"[{json.dumps(rid)},{int(seq)},{json.dumps(etype)},{payload}]"
            for rid, seq, etype, payload in rows
        )
        + "]"
    )
    if "\\u0000" in batch:  # PostgreSQL's JSON parser refuses an escaped NUL: payloads as strings then
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":")), "e->>3"
    return batch, "(e->3)::text"


def pg_events_select(payload_column: str, created_at: str, batch: str) -> str:
    """The SELECT that turns :func:`pg_events_rows`' parameter into event rows (a list of columns)."""
    return (
        f"SELECT e->>0, (e->>1)::int, e->>2, {payload_column}, {created_at} "
        f"FROM json_array_elements({batch}::json) AS e"
    )


def pg_events_insert(rows: list[tuple[str, int, str, str]]) -> tuple[str, str]:
    """PostgreSQL: the INSERT of event rows (parameters: created_at, then the batch) and its batch."""
    batch, payload_column = pg_events_rows(rows)
    return (
        f"INSERT INTO {pg_table(ResponseEvent)} (response_id, sequence_number, type, payload, created_at) "
        f"{pg_events_select(payload_column, '%s', '%s')} ON CONFLICT DO NOTHING",
        batch,
    )


def pg_table(model: Any) -> str:
    """The model's table name, quoted for PostgreSQL."""
    return '"' + model._meta.db_table.replace('"', '""') + '"'
