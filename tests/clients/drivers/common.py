"""What every Python driver shares: the environment the test sets, the tool, and the result line.

Drivers run as their own process (``python tests/clients/drivers/X.py``) so each client starts the
way a user's program does; they print one JSON object, scenario name to result, as the last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

BASE_URL = os.environ["CLIENT_BASE_URL"]
API_KEY = os.environ["CLIENT_API_KEY"]
#: The models to drive, one per provider family the test selected.
MODELS = os.environ["CLIENT_MODELS"].split(",")
TOKEN = os.environ["TOOL_TOKEN"]
PROMPT = "Run the command, then tell me what it printed."


def shell(command: str) -> str:
    """Run a shell command and return what it printed."""
    # Never runs anything: answers with the token the test looks for in the model's final text.
    return f"{TOKEN} (from: {command})"


Scenarios = dict[str, Callable[[], Awaitable[dict[str, Any]]]]


def run_matrix(scenarios_for: Callable[[str], Scenarios]) -> None:
    """For each model, run each scenario made for it; print ``{model: {scenario: result}}`` as one line."""

    async def main() -> dict[str, Any]:
        results: dict[str, Any] = {}
        for model in MODELS:
            results[model] = {}
            for name, scenario in scenarios_for(model).items():
                try:
                    results[model][name] = await scenario()
                except Exception:  # noqa: BLE001 - reported to the test, which fails on it
                    results[model][name] = {"error": traceback.format_exc()[-3000:]}
        return results

    print(json.dumps(asyncio.run(main())), flush=True)
