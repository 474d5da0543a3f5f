"""``db_call``: a dead connection met by a read is healed and the read runs once more.

After PostgreSQL restarts, the sync thread's connection (kept between requests by the lean ASGI
front) is dead; the first query on it fails at once. A read (a key lookup, a GET) runs again on a
fresh connection instead of answering that request with an error, or with a 401 where the key
lookup swallows the error to fail closed. Writes are not run twice.
"""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError, connections

from responses_app.api.db import db_call


@pytest.fixture
def dead_once(monkeypatch: pytest.MonkeyPatch):
    """The first query of the thread meets a dead connection: it errs and is no longer usable."""
    state = {"dead": True, "calls": 0, "closed": 0}

    def query() -> str:
        state["calls"] += 1
        connection = connections["default"]
        connection.ensure_connection()
        if state["dead"]:
            connection.errors_occurred = True
            monkeypatch.setattr(type(connection), "is_usable", lambda self: not state["dead"])
            raise OperationalError("terminating connection due to administrator command")
        return "rows"

    real_close = type(connections["default"]).close

    def close(self) -> None:
        if state["dead"]:
            state["closed"] += 1
            state["dead"] = False
        real_close(self)

    monkeypatch.setattr(type(connections["default"]), "close", close)
    return state, query


@pytest.mark.django_db(transaction=True)
def test_a_read_that_met_a_dead_connection_runs_again_on_a_fresh_one(dead_once) -> None:
    state, query = dead_once
    assert asyncio.run(db_call(query, reads=True)()) == "rows"
    assert state == {"dead": False, "calls": 2, "closed": 1}


@pytest.mark.django_db(transaction=True)
def test_a_read_that_swallowed_the_error_runs_again(dead_once) -> None:
    """A key lookup fails closed (returns no identity) on a database error: run again, it finds one."""
    state, query = dead_once

    def lookup() -> str | None:
        try:
            return query()
        except OperationalError:
            return None

    assert asyncio.run(db_call(lookup, reads=True)()) == "rows"
    assert state["calls"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_write_is_not_run_twice(dead_once) -> None:
    state, query = dead_once
    with pytest.raises(OperationalError):
        asyncio.run(db_call(query)())
    assert state == {"dead": False, "calls": 1, "closed": 1}


@pytest.mark.django_db(transaction=True)
def test_an_error_on_a_live_connection_is_not_retried() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise ValueError("not the database")

    with pytest.raises(ValueError):
        asyncio.run(db_call(failing, reads=True)())
    assert calls == [1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("error", [OperationalError("the database system is shutting down"), None])
def test_a_database_that_is_down_answers_503_in_the_error_shape(
    monkeypatch: pytest.MonkeyPatch, error
) -> None:
    """Not a 500 (no bug of ours) and not HTML: the spec's error shape, with a Retry-After."""
    import psycopg
    from django.test import Client

    from responses_app import selectors
    from tests.support.spec import assert_valid_error

    raised = error or psycopg.OperationalError("connection refused")

    def down(**_: object) -> None:
        raise raised

    monkeypatch.setattr(selectors, "response_get", down)
    response = Client().get("/v1/responses/resp_x")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "1"
    body = response.json()
    assert_valid_error(body)
    assert body["error"]["code"] == "service_unavailable"
