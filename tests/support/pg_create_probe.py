"""Run in a process of its own on a PostgreSQL ``DATABASE_URL``: store the same creates through the
ORM (``services.response_create``) and through the one-statement path (``flows._store_new``), and
print both sets of stored rows as JSON (ids left out) for ``tests/services/test_create_postgres.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openresponses_site.settings")


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from asgiref.sync import sync_to_async
    from django.db import IntegrityError

    from providers_app.registry import Route
    from responses_app.models import Response, ResponseItem
    from responses_app.services import flows, pg_async
    from responses_app.services import responses as services
    from responses_app.types import CreateRequest

    route = Route(provider="mock", upstream_model="mock-upstream", pattern="mock-*", source="default")
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "héllo \u2603 a\x00b \uffff"}],
        },
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {
            "type": "message",
            "id": "msg_x",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "x"}],
        },
    ]
    cases: list[dict[str, Any]] = [
        {"items": items, "params": {"model": "mock-1", "temperature": 0.5, "metadata": {"k": "v"}}},
        {"items": [], "params": {}, "store": False, "background": True},
        {"items": items[:1], "params": {"model": "mock-1"}, "start": True, "stream": True},
    ]

    def row(response_id: str) -> dict[str, Any]:
        stored = Response.objects.filter(id=response_id).values().get()
        stored = {
            k: v for k, v in stored.items() if k not in {"id", "created_at", "heartbeat_at", "started_at"}
        }
        stored["items"] = list(
            ResponseItem.objects.filter(response_id=response_id)
            .order_by("kind", "position")
            .values("kind", "position", "item_id", "item_type", "data")
        )
        return stored

    def request_of(case: dict[str, Any], previous: str | None = None) -> CreateRequest:
        return CreateRequest(
            model="mock-1",
            params=case["params"],
            input_items=case["items"],
            previous_response_id=previous,
            stream=case.get("stream", False),
            background=case.get("background", False),
            store=case.get("store", True),
        )

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {"available": pg_async.available(), "orm": [], "async": [], "context": []}
        for path in ("orm", "async"):
            previous = None
            for index, case in enumerate(cases + [cases[0]]):
                chained = index == len(cases)  # the last one continues the first (a read first)
                kwargs = {
                    "request": request_of(case, previous if chained else None),
                    "owner": "owner-1",
                    "route": route,
                    "request_id": f"req-{index}",
                    "start": case.get("start", False),
                    "idempotency_key": f"{path}-key-{index}",
                }
                if path == "orm":
                    response = await sync_to_async(services.response_create)(**kwargs)
                else:
                    response = await flows._store_new(**kwargs)
                if index == 0:
                    previous = response.id
                stored = await sync_to_async(row)(response.id)
                stored["idempotency_key"] = stored["idempotency_key"].split("-", 1)[1]
                stored["ancestor_ids"] = len(stored["ancestor_ids"])
                stored["previous_response_id"] = stored["previous_response_id"] is not None
                out[path].append(stored)
                if kwargs["start"]:
                    out["context"].append(getattr(response, "context_items", None))
        try:
            await flows._store_new(
                request=request_of(cases[0]),
                owner="owner-1",
                route=route,
                request_id="dup",
                idempotency_key="async-key-0",
            )
            out["duplicate"] = "stored"
        except IntegrityError:
            out["duplicate"] = "IntegrityError"
        # The database drops every connection (a restart): the next create replaces the broken one.
        import psycopg

        params, _ = pg_async.connection_params()
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            survivor = await flows._store_new(
                request=request_of(cases[0]), owner="owner-1", route=route, request_id="after-drop"
            )
            out["after_drop"] = admin.execute(
                "SELECT count(*) FROM responses_app_responseitem WHERE response_id = %s", [survivor.id]
            ).fetchone()[0]
        return out

    async def closing() -> dict[str, Any]:
        try:
            return await run()
        finally:
            await pg_async.close_pool()

    json.dump(asyncio.run(closing()), sys.stdout, default=str)


if __name__ == "__main__":
    main()
