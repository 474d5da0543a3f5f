"""Hosted tools used by the tests (registered through OPENRESPONSES_HOSTED_TOOLS)."""

from __future__ import annotations

import time

from responses_app.loop.tools import not_retry_safe


def get_weather(city: str, unit: str = "celsius") -> dict:
    """Current weather for a city."""
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit, "conditions": "sunny"}


def add_numbers(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def slow_tool(seconds: float) -> str:
    """Sleep, then answer (used to test tool timeouts)."""
    time.sleep(seconds)
    return "done"


def broken_tool(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"broken: {reason}")


# ---- durable loops: tools that log every run to the file named by OPENRESPONSES_TEST_TOOL_LOG


def _log_path() -> str:
    import os

    return os.environ["OPENRESPONSES_TEST_TOOL_LOG"]


def tool_log() -> list[str]:
    """The lines the logging tools wrote: ``start <tool> <key>`` and ``done <tool> <key>``."""
    try:
        with open(_log_path()) as log:
            return log.read().splitlines()
    except FileNotFoundError:
        return []


def _log(line: str) -> None:
    import os

    host = os.environ.get("OPENRESPONSES_TEST_HOST")  # which host ran it (the fault matrix's)
    with open(_log_path(), "a") as log:
        log.write(line + (f" @{host}" if host else "") + "\n")


def logged_tool(name: str, idempotency_key: str = "") -> str:
    """Answer at once, logging the run."""
    _log(f"start logged_tool {idempotency_key}")
    _log(f"done logged_tool {idempotency_key}")
    return f"logged {name}"


def blocking_tool(name: str, idempotency_key: str = "") -> str:
    """Block on the first attempt of a call (until the test kills the process running it); a
    retry of the same call (same idempotency key) runs it to the end, once."""
    first = f"start blocking_tool {idempotency_key}" not in tool_log()
    _log(f"start blocking_tool {idempotency_key}")
    if first:
        time.sleep(60)
    if f"done blocking_tool {idempotency_key}" not in tool_log():
        _log(f"done blocking_tool {idempotency_key}")
    return f"blocked {name}"


def pause_tool(name: str, idempotency_key: str = "") -> str:
    """Take two seconds (a tool step in flight while the test injects a fault), logging the run."""
    _log(f"start pause_tool {idempotency_key}")
    time.sleep(2)
    _log(f"done pause_tool {idempotency_key}")
    return f"paused {name}"


def hold_tool(name: str, idempotency_key: str = "") -> str:
    """Run until the test releases it (the file ``<tool log>.release`` exists; 60 s at most):
    a tool step in flight for as long as the test needs to set up a fault."""
    import os

    _log(f"start hold_tool {idempotency_key}")
    deadline = time.monotonic() + 60
    while not os.path.exists(_log_path() + ".release") and time.monotonic() < deadline:
        time.sleep(0.05)
    # It honours its idempotency key: a call that completed already (its result lost with its
    # worker) is not done again.
    if ["done", "hold_tool", idempotency_key] not in [line.split()[:3] for line in tool_log()]:
        _log(f"done hold_tool {idempotency_key}")
    return f"held {name}"


@not_retry_safe
def once_only_tool(name: str) -> str:
    """A tool that must never run twice (declared not retry-safe)."""
    _log(f"start once_only_tool {name}")
    return f"once {name}"
