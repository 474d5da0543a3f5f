"""The provider call as sent and answered is kept on the response (for the admin), secrets masked."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from providers_app.adapters.base import WIRE_LOG, ModelRequest, ProviderConfig, finished_wire_log
from providers_app.adapters.openai_responses import OpenAIResponsesAdapter
from tests.support.api import create
from tests.support.upstream import FakeUpstream, Reply


def test_adapter_records_request_and_answer():
    secret = "sk-wire-test-secret-123456"
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai/text_stream.sse"))
        adapter = OpenAIResponsesAdapter(
            ProviderConfig(name="openai", adapter="openai", base_url=up.base_url + "/v1", api_key=secret)
        )
        request = ModelRequest(
            model="gpt-4o",
            items=[
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 5000}]}
            ],
        )

        async def run() -> list:
            log: list = []
            WIRE_LOG.set(log)
            async for _ in adapter.sample(request, stream=True):
                pass
            await adapter.aclose()
            return log

        log = finished_wire_log(asyncio.run(run()))
    assert len(log) == 1
    entry = log[0]
    assert entry["url"].endswith("/v1/responses") and entry["status"] == 200 and entry["provider"] == "openai"
    assert entry["request"]["model"] == "gpt-4o"
    assert "(5000 characters)" in entry["request"]["input"][0]["content"][0]["text"], (
        "long strings are abbreviated"
    )
    assert "response.completed" in entry["response"]
    assert secret not in json.dumps(entry)


def test_wire_log_stored_with_the_response(http, upstream, server):
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    data = create(http, {"model": "gpt-4o", "input": "wire?"})
    db = sqlite3.connect(server.env["OPENRESPONSES_SQLITE_PATH"])
    try:
        (raw,) = db.execute(
            "SELECT wire_log FROM responses_app_response WHERE id = ?", (data["id"],)
        ).fetchone()
    finally:
        db.close()
    wire = json.loads(raw)
    assert wire[0]["request"]["input"][0]["content"][0]["text"] == "wire?"
    assert wire[0]["status"] == 200 and '"output"' in wire[0]["response"]
    assert "sk-test-openai-secret-0001" not in raw


def test_a_key_echoed_in_an_answer_is_masked_even_across_the_cut():
    from providers_app.adapters.wirelog import WIRE_LOG_MAX_CHARS
    from providers_app.adapters.wirelog import append as wire_append

    secret = "sk-echoed-secret-abcdef123456"
    adapter = OpenAIResponsesAdapter(
        ProviderConfig(name="openai", adapter="openai", base_url="http://127.0.0.1:9/v1", api_key=secret)
    )
    log: list = []

    async def record() -> None:
        WIRE_LOG.set(log)
        entry = adapter.wire_entry("POST", "http://127.0.0.1:9/v1/responses", {"model": "gpt-4o"})
        assert entry is not None
        wire_append(entry, "x" * (WIRE_LOG_MAX_CHARS - 10) + secret + "\n")  # the key spans the cut
        for _ in range(200):
            wire_append(entry, f"data: {secret}\n")

    asyncio.run(record())
    (entry,) = finished_wire_log(log)
    assert entry["response"] == "x" * (WIRE_LOG_MAX_CHARS - 10) + "***\ndata: "  # masked, then cut
    for cut in range(8, len(secret) + 1):
        assert secret[:cut] not in entry["response"]
    assert all(not key.startswith("_") for key in entry)
