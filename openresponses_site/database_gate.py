"""A Celery worker that cannot reach PostgreSQL stops taking tasks until it can again.

A loop needs the database for everything it does: a worker cut off from PostgreSQL (a partition,
a dead link) that took a task would hold it until its heartbeat went stale and the reaper handed
the response to another worker — one more takeover, seconds lost. Here a thread of the worker
probes PostgreSQL every second (a fresh connection and ``SELECT 1``, bounded by libpq's
``connect_timeout`` and a statement deadline); while the probe fails, the consumer stops consuming
its task queues (``cancel_task_queue``), so the other workers take the tasks; once the probe
succeeds again it consumes them again. Only the consumer's own thread touches the consumer: the
probe thread sets a flag, a timer of the consumer acts on it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)

#: Seconds between probes, and the most a probe waits for PostgreSQL (libpq's minimum is 2).
PROBE_EVERY = 1.0
PROBE_TIMEOUT = 2


def probe() -> bool:
    """True when PostgreSQL answers on a fresh connection within ``PROBE_TIMEOUT`` s.

    A server that answers with an error (``FATAL: sorry, too many clients already``, starting up)
    counts as reachable: pausing would not help, and a full server must not stop every worker.
    Only a link that is silent, refused or broken counts as unreachable.
    """
    import psycopg

    from responses_app.services.pg_async import connection_kwargs

    try:
        with psycopg.connect(
            **{**connection_kwargs(), "connect_timeout": PROBE_TIMEOUT},
            options=f"-c statement_timeout={PROBE_TIMEOUT * 1000}",
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error as exc:
        return "FATAL:" in str(exc) or getattr(exc, "sqlstate", None) is not None
    except Exception:  # noqa: BLE001 - anything else is "unreachable"
        return False


class Health:
    """The probe's latest verdict, updated by a daemon thread (one per worker process)."""

    def __init__(self) -> None:
        self.reachable = True
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="openresponses-db-probe", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            reachable = probe()
            if reachable != self.reachable:
                if reachable:
                    logger.warning("PostgreSQL is reachable again")
                else:
                    logger.warning("PostgreSQL is unreachable")
            self.reachable = reachable
            time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))


health = Health()


class DatabaseGate(bootsteps.StartStopStep):
    """A consumer step: cancel the task queues while PostgreSQL is unreachable, consume them again after."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.paused: list[str] = []
        self.entry: Any = None

    def start(self, c: Any) -> None:
        from django.db import connections

        if connections["default"].vendor != "postgresql":
            return
        health.ensure_started()
        self.entry = c.timer.call_repeatedly(PROBE_EVERY / 2, self.apply, (c,), priority=10)

    def apply(self, c: Any) -> None:
        """On the consumer's thread: follow the probe's verdict."""
        if c.task_consumer is None:
            return
        # (A step that fails half-way, the broker lost too, is finished by the consumer's restart:
        # it consumes the queues selected then, and the selection changes first.)
        try:
            if not health.reachable and not self.paused:
                self.paused = [queue.name for queue in c.task_consumer.queues]
                logger.warning("PostgreSQL unreachable: not taking tasks from %s", ", ".join(self.paused))
                for name in self.paused:
                    c.cancel_task_queue(name)
            elif health.reachable and self.paused:
                paused, self.paused = self.paused, []
                logger.warning("PostgreSQL reachable: taking tasks from %s again", ", ".join(paused))
                for name in paused:
                    c.add_task_queue(name)
        except Exception:  # noqa: BLE001 - the broker is away as well: its reconnect follows the selection
            logger.warning("could not change the consumed queues", exc_info=True)

    def stop(self, c: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
