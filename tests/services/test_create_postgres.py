"""The create path on PostgreSQL: one statement from the event loop stores what the ORM stores.

The probe (``tests/support/pg_create_probe.py``) runs in a process of its own on a fresh
database, since these tests' own Django runs on SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.production import PostgresDatabase, require_services
from tests.support.server import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def probe() -> dict:
    require_services()
    database = PostgresDatabase("or_create")
    try:
        env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "REDIS_URL": "",
            "DJANGO_SETTINGS_MODULE": "openresponses_site.settings",
            "DJANGO_SECRET_KEY": "tests-create-postgres-secret-key-not-for-production",
            "OPENRESPONSES_CONFIG": "",
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.pg_create_probe"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)
    finally:
        database.drop()


def test_the_one_statement_path_is_taken_on_postgresql(probe: dict) -> None:
    assert probe["available"] is True


def test_rows_match_what_the_orm_stores(probe: dict) -> None:
    assert len(probe["async"]) == len(probe["orm"]) == 4
    for orm, fast in zip(probe["orm"], probe["async"], strict=True):
        assert fast == orm
    # positions, ids and types of the items, a chain's ancestors and a started response's state
    first = probe["async"][0]
    assert [(i["position"], i["item_id"], i["item_type"]) for i in first["items"]] == [
        (0, "", "message"),
        (1, "fc_1", "function_call"),
        (2, "", "function_call_output"),
        (3, "msg_x", "message"),
    ]
    assert (
        first["items"][0]["data"]["content"][0]["text"] == "héllo \u2603 a\x00b \uffff"
    )  # NUL and U+FFFF too (the stored JSON escapes)
    assert probe["async"][1]["items"] == [] and probe["async"][1]["store"] is False
    assert (probe["async"][2]["status"], probe["async"][2]["attempts"]) == ("in_progress", 1)
    assert (probe["async"][3]["previous_response_id"], probe["async"][3]["ancestor_ids"]) == (True, 1)


def test_a_started_response_carries_its_context(probe: dict) -> None:
    orm_context, fast_context = probe["context"]
    assert fast_context == orm_context and fast_context[0]["role"] == "user"


def test_a_repeated_idempotency_key_is_an_integrity_error(probe: dict) -> None:
    assert probe["duplicate"] == "IntegrityError"


def test_a_connection_broken_by_a_database_restart_is_replaced(probe: dict) -> None:
    assert probe["after_drop"] == 4  # stored, with its four input items
