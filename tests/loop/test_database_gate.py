"""The worker's database gate: its task queues cancelled while PostgreSQL is unreachable, consumed again after."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from openresponses_site import database_gate


class FakeConsumer:
    def __init__(self, queues: list[str]) -> None:
        self.task_consumer = SimpleNamespace(queues=[SimpleNamespace(name=n) for n in queues])
        self.calls: list[tuple[str, str]] = []

    def cancel_task_queue(self, name: str) -> None:
        self.calls.append(("cancel", name))
        self.task_consumer.queues = [q for q in self.task_consumer.queues if q.name != name]

    def add_task_queue(self, name: str) -> None:
        self.calls.append(("add", name))
        self.task_consumer.queues.append(SimpleNamespace(name=name))


@pytest.fixture
def gate(monkeypatch) -> database_gate.DatabaseGate:
    monkeypatch.setattr(database_gate.health, "reachable", True)
    return database_gate.DatabaseGate(SimpleNamespace())


def test_queues_are_cancelled_while_the_database_is_unreachable_and_consumed_again(gate, monkeypatch):
    consumer = FakeConsumer(["jobs"])
    gate.apply(consumer)
    assert consumer.calls == []
    monkeypatch.setattr(database_gate.health, "reachable", False)
    gate.apply(consumer)
    gate.apply(consumer)  # once, not at every tick
    assert consumer.calls == [("cancel", "jobs")]
    monkeypatch.setattr(database_gate.health, "reachable", True)
    gate.apply(consumer)
    gate.apply(consumer)
    assert consumer.calls == [("cancel", "jobs"), ("add", "jobs")]
    assert [q.name for q in consumer.task_consumer.queues] == ["jobs"]


def test_a_failing_broker_does_not_lose_the_paused_queues(gate, monkeypatch):
    consumer = FakeConsumer(["jobs"])
    monkeypatch.setattr(database_gate.health, "reachable", False)

    def broken(name: str) -> None:
        raise ConnectionError("the broker is away too")

    consumer.cancel_task_queue = broken
    gate.apply(consumer)  # logged, not raised: the consumer's timer keeps running
    assert gate.paused == ["jobs"]
    monkeypatch.setattr(database_gate.health, "reachable", True)
    gate.apply(consumer)
    assert consumer.calls == [("add", "jobs")]


def test_the_probe_fails_fast_on_an_unreachable_server(monkeypatch):
    import time

    from responses_app.services import pg_async

    monkeypatch.setattr(
        pg_async, "connection_kwargs", lambda: {"host": "127.0.0.1", "port": 1, "dbname": "x"}
    )
    started = time.monotonic()
    assert database_gate.probe() is False
    assert time.monotonic() - started < 5


def test_a_server_that_answers_with_an_error_is_reachable(monkeypatch):
    """A full server (too many clients) must not stop every worker: it answered."""
    import psycopg

    from responses_app.services import pg_async

    monkeypatch.setattr(
        pg_async, "connection_kwargs", lambda: {"host": "127.0.0.1", "port": 1, "dbname": "x"}
    )

    def full(**kwargs):
        raise psycopg.OperationalError(
            'connection to server at "10.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already'
        )

    monkeypatch.setattr(psycopg, "connect", full)
    assert database_gate.probe() is True
