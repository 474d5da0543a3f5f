"""The benchmark runs: ``bench.run --quick`` end to end (real upstream, real daphne), no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.client import Connection
from bench.upstream import responses_text
from tests.support.spec import assert_valid_event, assert_valid_response

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--json",
            "--topology",
            "embedded",
            "--workdir",
            str(workdir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


def test_quick_run_reports_every_shape(quick_report: dict) -> None:
    shapes = quick_report["topologies"]["embedded"]["shapes"]
    assert set(quick_report["meta"]["shapes"]) == {"instant", "paced", "long", "agentic", "store", "chain"}
    for name in quick_report["meta"]["shapes"]:
        assert name in shapes, name
    instant = shapes["instant"]
    for target in ("direct", "ours"):
        for mode in ("json", "stream"):
            assert instant[target][mode]["errors"] == 0, (target, mode, instant[target][mode])
            assert instant[target][mode]["p50_ms"] > 0
    assert instant["ours"]["stream"]["added_p50_ms"] is not None
    assert instant["breakdown"]["samples"] > 0


def test_quick_run_delivers_every_delta(quick_report: dict) -> None:
    shapes = quick_report["topologies"]["embedded"]["shapes"]
    for level in (k for k in shapes["paced"] if k.startswith("c")):
        assert shapes["paced"][level]["ours"]["errors"] == 0
    for level in (k for k in shapes["long"] if k.startswith("n")):
        ours = shapes["long"][level]["ours"]
        assert ours["complete"] == ours["clients"], ours["error_kinds"]
    assert shapes["agentic"]["ours"]["errors"] == 0
    assert shapes["chain"]["ours"]["errors"] == 0
    assert all(v["errors"] == 0 for v in shapes["store"].values() if isinstance(v, dict))


def test_quick_run_checks_targets(quick_report: dict) -> None:
    rows = quick_report["topologies"]["embedded"]["targets"]
    figures = [row["figure"] for row in rows]
    assert any(f.startswith("added TTFT") for f in figures)
    assert any(f.startswith("paced throughput") for f in figures)
    for row in rows:
        if row["target"].startswith("("):  # reported only, or not required of this topology
            assert row["met"] is None, row
        else:  # a target is judged whenever its figures were measured (no LiteLLM: only ours count)
            assert isinstance(row["met"], bool), row
    # The verdicts follow from the figures (whatever the machine's speed, never the other way round).
    by_figure = {row["figure"]: row for row in rows}
    latency = by_figure["added latency p50 non-streamed, c=1 (ms)"]
    assert latency["met"] == (latency["ours"] <= 3), latency
    memory = next(row for figure, row in by_figure.items() if figure.startswith("memory per open stream"))
    assert memory["met"] == (memory["ours"] <= 64), memory


def test_fake_upstream_speaks_the_responses_stream() -> None:
    """The benchmark's upstream frames are valid Responses events (our adapter and LiteLLM parse them)."""
    head, frames, tail, whole = responses_text("bench-model", 3)
    events = []
    for block in (head + b"".join(frames) + tail).decode().split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            events.append(json.loads(data[0]))
    assert [e["type"] for e in events][-1] == "response.completed"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "w0 w1 w2 "
    for event in events:
        assert_valid_event(event)
    assert_valid_response(json.loads(whole))


def test_client_reads_our_server(server) -> None:  # noqa: ANN001 - the session's embedded server fixture
    """The load generator's raw client decodes a chunked SSE answer from daphne."""
    import asyncio

    async def go() -> tuple:
        conn = Connection("127.0.0.1", server.port)
        body = json.dumps({"model": "mock-1", "input": "one two", "stream": True}).encode()
        result = await conn.request("POST", "/v1/responses", body, marker=b"output_text.delta")
        conn.close()
        return result

    result = asyncio.run(go())
    assert result.ok and result.first <= result.end
    assert "".join(result.deltas()) == "You said: one two"
    assert "parse;dur=" in result.headers["server-timing"] and "t0;desc=" in result.headers["server-timing"]
