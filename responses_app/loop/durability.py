"""A loop's durable steps: what a worker that takes the loop over resumes from.

The checkpoint (``Response.checkpoint``) is written after each completed step, once the events
of that step are stored:

* ``stage="sampled"``: sample ``iteration`` finished; its items (``sample_items``), its
  ``finish_reason``, the usage so far and the tool calls counted before it;
* ``tools``: per call id of that sample, ``{}`` once the call may have started and
  ``{"output": ...}`` once its result is known (written as each call ends);
* ``stage="tools_done"``: the results are in the output; the next sample comes next.

``items`` is how many output items belong to completed steps; items after them (in the stored
log) are the interrupted step's and are left out of what the model sees on the retry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from responses_app.events.emitter import ResponseEmitter, Sink
from responses_app.events.resume import resume_emitter, stored_prefix
from responses_app.loop.supervision.db import run_db
from responses_app.models import Response
from responses_app.services.durability import response_checkpoint


class Superseded(Exception):
    """Another worker took this loop over (this one was late, not lost): stop without a trace."""


class Checkpoints:
    """The checkpoint of one loop run, written through the takeover fence."""

    def __init__(self, response_id: str, takeovers: int, state: dict[str, Any] | None) -> None:
        self.response_id = response_id
        self.takeovers = takeovers
        self.state: dict[str, Any] = dict(state or {})
        self._lock = asyncio.Lock()

    async def save(self, **changes: Any) -> None:
        """Apply ``changes`` and store the whole checkpoint (one write at a time, in order)."""
        async with self._lock:
            self.state.update(changes)
            if not await run_db(
                response_checkpoint,
                response_id=self.response_id,
                takeovers=self.takeovers,
                checkpoint=self.state,
            ):
                raise Superseded(self.response_id)

    @property
    def tools(self) -> dict[str, dict[str, Any]]:
        return self.state.setdefault("tools", {})

    async def tools_started(self, call_ids: list[str]) -> None:
        if call_ids:
            await self.save(tools={**self.tools, **{call_id: {} for call_id in call_ids}})

    async def tool_done(self, call_id: str, output: str) -> None:
        async with self._lock:
            self.tools[call_id] = {"output": output}
        await self.save()


def restored_emitter(
    resource: dict[str, Any],
    sink: Sink,
    events: list[tuple[int, str, str]],
    checkpoint: dict[str, Any],
    response: Response,
) -> ResponseEmitter:
    """The emitter of a taken-over loop: the stored events replayed, the checkpoint's usage and
    item metadata, and the interrupted step's items marked ``abandoned`` (kept in the output,
    left out of what the model sees)."""
    emitter = resume_emitter(
        resource,
        sink,
        stored_prefix(events),
        provider=response.provider,
        item_meta=checkpoint.get("item_meta"),
        usage=checkpoint.get("usage"),
    )
    emitter.first_output_at = checkpoint.get("first_output_at") or response.first_token_at
    # Outputs of the checkpointed sample's calls that made it into the log are results, not debris.
    pending_calls = set(checkpoint.get("tools") or {}) if checkpoint.get("stage") == "sampled" else set()
    for item in emitter.output[checkpoint.get("items", 0) :]:
        if not (item.get("type") == "function_call_output" and item.get("call_id") in pending_calls):
            emitter.item_meta.setdefault(item["id"], {})["abandoned"] = True
    return emitter


def idempotency_key(response_id: str, call_id: str) -> str:
    """The key a tool call keeps across takeovers (a tool that honours it runs the call once)."""
    return f"{response_id}:{call_id}"
