"""Hosted tools used by the tests (registered through OPENRESPONSES_HOSTED_TOOLS)."""

from __future__ import annotations

import time


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
