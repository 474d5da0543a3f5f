"""The create path's database checks make no connection object per request task.

On an event loop Django's ``connections`` is a context variable: ``connections["default"]`` in
a request task builds a ``DatabaseWrapper`` that lives as long as the task (a stream).
"""

from __future__ import annotations

import asyncio

import pytest
from django.db import connections, transaction

from responses_app.services import flows, pg_async


async def _made_in_a_fresh_task(check) -> tuple[object, list[str]]:
    async def task() -> tuple[object, list[str]]:
        result = check()
        return result, [made.alias for made in connections.all(initialized_only=True)]

    return await asyncio.create_task(task())


def test_vendor_and_available_leave_no_connection_object_in_the_task() -> None:
    result, made = asyncio.run(_made_in_a_fresh_task(lambda: (pg_async.vendor(), pg_async.available())))
    assert result == ("sqlite", False)
    assert made == []


def test_choosing_where_a_write_runs_leaves_no_connection_object_in_the_task() -> None:
    result, made = asyncio.run(_made_in_a_fresh_task(lambda: flows._write(len)))
    assert callable(result)
    assert made == []


def test_vendor_is_the_databases_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_async, "_vendors", {})
    assert pg_async.vendor() == connections["default"].vendor


@pytest.mark.django_db(transaction=True)
def test_not_available_inside_a_transaction_of_this_context(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setattr(pg_async, "_vendors", {"default": "postgresql"})
    connections["default"].ensure_connection()
    assert pg_async.available() is True
    with transaction.atomic():
        assert pg_async.available() is False
    assert pg_async.available() is True


def test_the_create_statements_values_are_prepared_without_a_connection_object_in_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``aresponse_insert`` prepares its JSON values on a shared connection object, not on
    ``django.db.connection`` (which made one ``DatabaseWrapper`` per open stream)."""
    from responses_app.models import Response
    from responses_app.services import responses

    sent: list[list] = []

    class Cursor:
        closed = False

        async def execute(self, sql: str, params: list) -> None:
            sent.append(params)

    class Connection:
        def cursor(self) -> Cursor:
            return Cursor()

    class Pool:  # psycopg_pool's shape, as aresponse_insert uses it
        async def getconn(self) -> Connection:
            return Connection()

        async def putconn(self, conn: Connection) -> None:
            pass

    async def pool() -> Pool:
        return Pool()

    monkeypatch.setattr(pg_async, "pool", pool)
    response = Response(id="resp_ctx", model="m", provider="p", params={"input": "hi"}, created_at=1.0)
    item = {"type": "message", "role": "user", "content": "hi"}

    responses._insert_statement()  # built once per process (its first caller may make one)

    async def task() -> list[str]:
        await responses.aresponse_insert(response=response, items=[item])
        return [made.alias for made in connections.all(initialized_only=True)]

    async def main() -> list[str]:
        return await asyncio.create_task(task())

    assert asyncio.run(main()) == []
    assert len(sent) == 1
