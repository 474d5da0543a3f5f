"""The agentic loop: sample, dispatch tool calls, sample again — independent of how it is run.

``run_response(response_id)`` is the same coroutine whether it runs in the serving process
(embedded default) or in a Celery worker's event loop (production topology).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers_app.adapters.base import WIRE_LOG, ModelRequest, UpstreamError, finished_wire_log
from providers_app.registry import ConfigError, aget_adapter
from responses_app.conf import openresponses_settings
from responses_app.events import sealing
from responses_app.events.bus import LocalBus, get_bus
from responses_app.events.emitter import ResponseEmitter
from responses_app.events.sink import BatchingSink
from responses_app.ids import (
    function_call_output_id,
    mcp_approval_request_id,
    mcp_call_id,
    mcp_list_tools_id,
)
from responses_app.loop.durability import Checkpoints, Superseded, idempotency_key, restored_emitter
from responses_app.loop.fallbacks import sample_with_fallbacks
from responses_app.loop.held import HeldResponse
from responses_app.loop.mcp import McpError, McpToolset
from responses_app.loop.middleware import LoopContext, StopLoop, call_hook, loop_middleware
from responses_app.loop.supervision import pg
from responses_app.loop.supervision.activity import CancelSignal, activity
from responses_app.loop.supervision.db import event_writer, run_db
from responses_app.loop.supervision.dispatch import response_from_carried
from responses_app.loop.tool_types import CALL_TYPES, ToolPlan, mcp_error, native_tool_types, plan_tools
from responses_app.loop.tools import HostedTool, hosted_tools
from responses_app.models import Response
from responses_app.observability.logs import bind as bind_log_context
from responses_app.observability.tracing import traced_tool_call
from responses_app.openai_tools import SEARCH_SOURCES
from responses_app.resource import build_resource
from responses_app.selectors import response_context_items
from responses_app.services.compaction import model_items
from responses_app.services.durability import response_claim_resume
from responses_app.services.responses import response_finish, response_start, response_start_at
from responses_app.states import ResponseStatus

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str
    error: dict[str, Any] | None = None
    incomplete_reason: str | None = None


def _load(response_id: str) -> tuple[Response, list[dict[str, Any]]] | None:
    """Start a queued response and load its context; None when there is nothing to run.

    A response cancelled before it started is returned too, so its stream gets a terminal event.
    """
    response, started = response_start(response_id=response_id)
    if response is None:
        return None
    if started:
        return response, response_context_items(response=response)
    if response.status == ResponseStatus.CANCELLED and not response.events.exists():
        return response, []
    return None


async def _start(response_id: str) -> tuple[Response, list[dict[str, Any]]] | None:
    """:func:`_load`: on PostgreSQL one prepared round trip on this event loop's connection when
    this call starts the response, else (or on SQLite) the ORM way on a loop-database thread."""
    if pg.enabled():
        try:
            loaded = await pg.start(response_id)
            if loaded is None and await pg.wait_stored(response_id):  # (its create still on its way)
                loaded = await pg.start(response_id)
        except Exception:  # noqa: BLE001 - the ORM way below reads the response again
            logger.exception("starting %s on the loop's connection failed", response_id)
            loaded = None
        if loaded is not None:
            return loaded
    return await run_db(_load, response_id)


def start_now(response_id: str) -> Response | None:
    """Start a queued response on the calling thread (a worker's task thread): :func:`_load`, on
    PostgreSQL as one statement. Returns it with its ``context_items`` for ``run_response(started=...)``,
    or None when there is nothing to run."""
    loaded = None
    if pg.enabled():
        try:
            loaded = pg.start_sync(response_id)
            if loaded is None and pg.wait_stored_sync(response_id):  # (its create still on its way)
                loaded = pg.start_sync(response_id)
        except Exception:  # noqa: BLE001 - the ORM way below reads the response again
            logger.exception("starting %s in one statement failed", response_id)
    if loaded is None:
        loaded = _load(response_id)
    if loaded is None:
        return None
    response, context = loaded
    response.context_items = context
    return response


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, UpstreamError):
        return {
            "code": exc.code,
            "message": exc.message,
            "type": exc.error_type,
            "param": exc.param,
            "status": exc.status,
            "retry_after": exc.retry_after,
        }
    if isinstance(exc, StopLoop):
        return {
            "code": exc.code,
            "message": exc.message,
            "type": "invalid_request_error" if exc.status < 500 else "server_error",
            "param": None,
            "status": exc.status,
        }
    if isinstance(exc, McpError):
        return {
            "code": "mcp_server_error",
            "message": str(exc),
            "type": "server_error",
            "param": None,
            "status": 502,
        }
    if isinstance(exc, ConfigError):
        return {
            "code": "provider_misconfigured",
            "message": str(exc),
            "type": "server_error",
            "param": None,
            "status": 500,
        }
    return {
        "code": "server_error",
        "message": f"The loop failed: {type(exc).__name__}",
        "type": "server_error",
        "param": None,
        "status": 500,
    }


MAX_FLUSH_INTERVAL = 0.1


@functools.cache
def _processes() -> int:
    """The worker processes sharing the load (``OPENRESPONSES_WORKER_PROCESSES``, default 1)."""
    try:
        return max(1, int(os.environ.get("OPENRESPONSES_WORKER_PROCESSES") or 1))
    except ValueError:
        return 1


def flush_interval() -> float:
    """How long output events may wait to be sent together: the base interval, longer under load.

    A stream's first output leaves at once (see the sink); after it, its events go out at most
    every ``EVENT_FLUSH_INTERVAL``, and with more than 25 streams over up to 100 ms (well under
    the gaps clients notice). Every batch is a channel message (a Redis PUBLISH and its receipt
    in production), so this bounds their number per second. The load is the streams of this
    process times ``OPENRESPONSES_WORKER_PROCESSES`` (an estimate of the deployment's: the
    web process that receives every batch and the database that stores them serve them all; by
    one process's own count, spreading 50 streams over two processes halved the interval and
    sent smaller, more numerous batches).
    """
    base = float(openresponses_settings.EVENT_FLUSH_INTERVAL)
    return min(MAX_FLUSH_INTERVAL, base * max(1.0, len(activity().active) * _processes() / 25))


#: Strings up to this length in a loop's parameters and context are shared (``sys.intern``).
SHARED_STRING_CHARS = 24


def share_strings(value: Any) -> None:
    """Intern, in place, the object keys and short strings of decoded JSON ``value`` (its dicts
    and lists keep their identity: whoever else holds them holds the interned ones).

    A loop holds its response's parameters and its context for its whole life, each decoded
    afresh from the database or its message: interned, their keys ("parallel_tool_calls",
    "tool_choice", "content", ...) and values such as "auto" or "input_text" are one string in
    the process instead of a copy per open loop."""
    if isinstance(value, dict):
        items = [(_shared(k), _shared(v)) for k, v in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        value[:] = [_shared(v) for v in value]


def _shared(value: Any) -> Any:
    if type(value) is str:
        return sys.intern(value) if len(value) <= SHARED_STRING_CHARS else value
    share_strings(value)
    return value


async def _absorb_interruption(task: asyncio.Task) -> None:
    """Take back an interruption (``task.cancel()``) that did not reach the sample: the cancel
    request may still be pending on ``task`` (set while it was not waiting), to be thrown at its
    next wait; that wait is this one."""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if task.uncancel() > 0:
            raise  # (cancelled from outside meanwhile too)
        return
    task.uncancel()


class StartNotStored(Exception):
    """The start of a loop that began before it was stored did not apply: the loop must leave
    no trace (another run has the response, or it was cancelled or deleted before it started)."""


class LoopRun:
    """One run of one response's loop.

    ``resumed``: the stored events of a loop taken over from a lost worker; the run carries on
    from its checkpoint (see ``loop/durability.py``) instead of starting afresh.
    ``stored``: a run that begins while its start is being stored (:func:`run_response` with a
    carried start): resolves True once the start is stored, False if it was not. Until then the
    run only prepares and sends its upstream request: whatever it stores, publishes or runs (its
    events, checkpoints, tool calls, middleware, its finish) waits for it, and the cancel watch
    (:meth:`watch`) begins once it is stored.
    """

    def __init__(
        self,
        response: Response | HeldResponse,
        context: list[dict[str, Any]],
        resumed: list[tuple[int, str, str]] | None = None,
        stored: asyncio.Future[bool] | None = None,
    ) -> None:
        share_strings(response.params)
        share_strings(context)
        #: Its stored values for the loop's life; the model is made again to finish it.
        self.response = HeldResponse.of(response)
        self.context = context
        self.params = response.params
        self.stored = stored
        self.cancel = CancelSignal()
        self.watched = False
        bus = get_bus()
        persist = functools.partial(event_writer().write, response.id)
        publish = functools.partial(bus.publish, response.id)
        if stored is not None:
            persist, publish = self._after_start(persist), self._after_start(publish)
        self.sink = BatchingSink(
            persist=persist,
            publish=publish,
            interval=flush_interval,
            publish_first=isinstance(bus, LocalBus),
        )
        resource = build_resource(response, [], status=ResponseStatus.IN_PROGRESS)
        checkpoint = (response.checkpoint or {}) if resumed is not None else {}
        self.resumed = resumed is not None
        self.checkpoints = Checkpoints(response.id, response.takeovers, checkpoint)
        if resumed is None:
            self.emitter = ResponseEmitter(resource, self.sink, provider=response.provider)
        else:
            self.emitter = restored_emitter(resource, self.sink, resumed, checkpoint, response)
        include = (response.params or {}).get("include") or []
        self.emitter.seal_reasoning = sealing.wanted(include)
        self.emitter.search_sources = SEARCH_SOURCES in include
        self.iterations = 0
        #: Whether the sample in flight (or the last one) yielded anything: then it is past its first byte.
        self.sample_started = False
        # The tools the model is shown: the request's functions (hosted ones with their schema),
        # its other tool types as this provider takes them, and its MCP servers' tools.
        self.function_tools: list[dict[str, Any]] = []
        self.mcp_tools: list[dict[str, Any]] = []
        self.plan = ToolPlan()
        self.tools: list[dict[str, Any]] = []
        self.mcp_names: dict[str, tuple[str, str]] = {}
        self.hosted: dict[str, HostedTool] = {}
        self.hosted_names: set[str] = set()
        # Upstream calls as sent and answered (secrets masked), for the admin's transcript.
        self.wire_log: list[dict[str, Any]] = []

    def _after_start(self, write: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def gated(batch: Any) -> Any:
            await self.start_stored()
            return await write(batch)

        return gated

    async def start_stored(self) -> None:
        """Return once the start is stored (at once for a run started the ordinary way); raise
        :class:`StartNotStored` if it was not. Every event batch of a carried run passes here: once
        the start is settled, no future is made for the wait."""
        stored = self.stored
        if stored is None:
            return
        if not stored.done():
            await asyncio.shield(stored)
        if not stored.result():
            raise StartNotStored(self.response.id)

    def _stored_already(self) -> bool:
        stored = self.stored
        return stored is None or (stored.done() and not stored.cancelled() and stored.result())

    def watch(self) -> None:
        """Heartbeats and cancel polling for this run (once its start is stored: a run whose
        start is refused must not touch the entry of the run that has the response)."""
        if not self.watched:
            activity().register(self.response.id, self.cancel)
            self.watched = True

    async def run(self) -> str:
        response = self.response
        emitter = self.emitter
        if not self.resumed:
            emitter.emit_lifecycle("response.created")
            if response.status == ResponseStatus.CANCELLED:
                emitter.finish("cancelled")
                await self.sink.drain()
                return "cancelled"
            emitter.emit_lifecycle("response.in_progress")
        if self.stored is None:
            self.watch()
        cancel = self.cancel
        WIRE_LOG.set(self.wire_log)
        try:
            try:
                outcome = await self._drive(cancel)
            except asyncio.CancelledError:
                if not self._stored_already():
                    # Its start is not stored (refused, or still on its way as the loop is torn
                    # down): nothing of this run may be stored or sent.
                    self.sink.abandon()
                    raise
                outcome = Outcome(
                    "failed",
                    {
                        "code": "server_error",
                        "message": "The loop was interrupted.",
                        "type": "server_error",
                        "status": 500,
                    },
                )
                await self._finish(outcome)
                raise
            except StartNotStored:
                self.sink.abandon()
                raise
            except Superseded:
                logger.warning("response %s was taken over by another worker; this run stops", response.id)
                return "superseded"
            except BaseException as exc:  # noqa: BLE001 - every failure ends in a terminal state
                logger.warning(
                    "response %s failed: %s",
                    response.id,
                    exc,
                    exc_info=not isinstance(exc, UpstreamError | StopLoop | McpError),
                )
                outcome = Outcome("failed", _error(exc))
            return await self._finish(outcome)
        finally:
            # Only now: until its final state is stored the loop keeps its heartbeat (the reaper
            # must not take a loop that is merely waiting for a busy database for an orphan).
            if self.watched:
                activity().unregister(response.id)

    async def _finish(self, outcome: Outcome) -> str:
        """Store the final state and the last events in one transaction, then publish them.

        The terminal events are built for ``outcome`` first and held; if another final state
        won meanwhile (a cancel, the reaper), they are dropped unsent and built again for it.
        """
        emitter = self.emitter
        sink = self.sink
        emitter.flush_deltas()
        emitter.close_item(status="incomplete" if outcome.status != "completed" else "completed")
        output = [emitter.stored_item(i) for i in emitter.output]
        terminal_from = emitter.seq
        sink.hold()
        self._emit_terminal(outcome.status, outcome)

        def wire_log() -> list[dict[str, Any]] | None:
            return finished_wire_log(self.wire_log) or None

        async def store(events: list[tuple[int, str, str]]) -> str:
            await self.start_stored()
            final = {
                "status": outcome.status,
                "output": output,
                "usage": emitter.usage,
                "error": outcome.error,
                "incomplete_details": {"reason": outcome.incomplete_reason}
                if outcome.incomplete_reason
                else None,
                "first_token_at": emitter.first_output_at,
                "iterations": self.iterations,
                "events": events,
            }
            won = None
            response = self.response.instance()
            if pg.enabled():  # one prepared statement on this event loop's connection
                try:
                    won = await pg.finish(response=response, wire_log=wire_log, **final)
                except Exception:  # noqa: BLE001 - nothing was stored: the ORM way below
                    logger.exception("finishing %s on the loop's connection failed", self.response.id)
            if won is None:  # (or another final state won meanwhile: the ORM way reads it)
                won = await run_db(
                    response_finish,
                    response_id=response.id,
                    response=response,
                    terminal_from=terminal_from,
                    wire_log=wire_log(),
                    **final,
                )
            if won != outcome.status:
                sink.discard_from(terminal_from)
            return won

        try:
            status = await sink.store_with(store)
        except Exception:  # noqa: BLE001 - the events stay queued; drain below tries again
            logger.exception("storing the final state of %s failed", self.response.id)
            status = outcome.status
        if status != outcome.status:
            emitter.rewind(terminal_from)
            self._emit_terminal(status, outcome)
        try:
            await sink.drain()
        except Exception:  # noqa: BLE001
            logger.exception("persisting the terminal event of %s failed", self.response.id)
        return status

    def _emit_terminal(self, status: str, outcome: Outcome) -> None:
        self.emitter.finish(
            status,
            error=outcome.error if status == "failed" else None,
            incomplete_reason=outcome.incomplete_reason if status == "incomplete" else None,
        )

    def _tools_for_model(self, hosted: dict[str, HostedTool]) -> list[dict[str, Any]]:
        tools = []
        for tool in self.params.get("tools") or []:
            if tool.get("type") != "function":
                continue
            if tool.get("hosted") and tool["name"] in hosted:
                registered = hosted[tool["name"]]
                tool = {
                    **tool,
                    "description": tool.get("description") or registered.description,
                    "parameters": registered.parameters,
                }
            tools.append({k: v for k, v in tool.items() if k != "hosted"})
        return tools

    def _plan(self, adapter: Any) -> None:
        """Translate the request's other tool types for ``adapter`` (see ``loop.tool_types``)."""
        self.plan = plan_tools(self.params.get("tools") or [], native_tool_types(adapter))
        self.plan.mcp = self.mcp_names
        self.emitter.tool_map = self.plan
        self.tools = self.function_tools + self.plan.tools + self.mcp_tools

    def request_for(self, adapter: Any, request: ModelRequest) -> ModelRequest:
        """``request`` for a fallback ``adapter``: translated again if it takes other tool types."""
        if native_tool_types(adapter) == self.plan.native:
            return request
        self._plan(adapter)
        return dataclasses.replace(self._model_request(self.tools), model=request.model)

    def _model_request(self, tools: list[dict[str, Any]]) -> ModelRequest:
        params = self.params
        emitter = self.emitter
        return ModelRequest(
            model=self.response.upstream_model or self.response.model,
            items=self.plan.model_items(
                model_items(
                    sealing.open_items(
                        self.context
                        + [
                            emitter.stored_item(i)
                            for i in emitter.output
                            if not emitter.item_meta.get(i["id"], {}).get("abandoned")
                        ],
                        emitter.provider,
                    ),
                    model=self.response.model,
                    upstream_model=self.response.upstream_model,
                    params=params,
                    tools=tools,
                )
            ),
            instructions=params.get("instructions"),
            tools=tools,
            tool_choice=self.plan.model_tool_choice(params.get("tool_choice", "auto"), bool(tools)),
            parallel_tool_calls=params.get("parallel_tool_calls", True),
            temperature=params.get("temperature"),
            top_p=params.get("top_p"),
            max_output_tokens=params.get("max_output_tokens"),
            text_format=(params.get("text") or {}).get("format"),
            reasoning=params.get("reasoning"),
            include=list(params.get("include") or []),
            metadata=dict(params.get("metadata") or {}),
            extra={
                **{
                    k: params.get(k)
                    for k in (
                        "service_tier",
                        "prompt_cache_key",
                        "prompt_cache_retention",
                        "safety_identifier",
                        "user",
                        "truncation",
                    )
                },
                "verbosity": (params.get("text") or {}).get("verbosity"),
                # A provider running its own search caps it with this (OpenAI counts its built-in
                # tools' calls against it).
                "max_tool_calls": params.get("max_tool_calls"),
            },
        )

    async def _sample(self, adapter: Any, request: ModelRequest, cancel: CancelSignal) -> bool:
        """Stream one sample into the emitter; False when cancelled meanwhile.

        The sample streams on the loop's own task: a cancel interrupts that task (its upstream
        request goes with it) and the interruption is taken back here, so no task, waiter or
        ``asyncio.wait`` is held per open sample."""
        if cancel.is_set():
            return False
        emitter = self.emitter
        stream = self.response.stream or self.response.background
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        cancel.on_set = interrupt
        self.sample_started = False
        try:
            async for chunk in adapter.sample(request, stream=stream):
                self.sample_started = True
                emitter.feed(chunk)
        except asyncio.CancelledError:
            # Only this sample's own interruption ends in False; the loop's cancellation goes on.
            if interrupted and task.uncancel() == 0:
                return False
            raise
        except Exception:
            if not interrupted:
                raise
            # (the adapter turned the interruption into an error of its own: the cancel wins)
        finally:
            cancel.on_set = None
        if interrupted:  # (the sample ended as it was interrupted: the cancel still wins)
            await _absorb_interruption(task)
            return False
        if stream:
            # An answer read whole (its last chunk in the read that brought the first) would
            # otherwise go straight to the finish, whose transaction takes the queued output
            # with the final state: one turn of the event loop lets the output's own store and
            # publish begin first, so the first token does not wait for the finish.
            await asyncio.sleep(0)
        return True

    async def _drive(self, cancel: CancelSignal) -> Outcome:
        mcp = McpToolset(self.params.get("tools") or [])
        try:
            return await self._drive_with(cancel, mcp)
        finally:
            if mcp:
                await mcp.close()

    async def _drive_with(self, cancel: asyncio.Event, mcp: McpToolset) -> Outcome:
        response = self.response
        params = self.params
        adapter = await aget_adapter(response.provider)
        self.emitter.family, self.emitter.carried_meta = adapter.family, adapter.carried_meta
        self.emitter.sealed_reasoning = adapter.sealed_reasoning
        hosted = hosted_tools()
        self.function_tools = self._tools_for_model(hosted)
        self._plan(adapter)
        if mcp:
            self.mcp_tools = await mcp.open({t["name"] for t in self.tools if t.get("name")})
            self.mcp_names = {t.exposed: (t.server.label, t.name) for t in mcp.tools.values()}
            self.plan.mcp = self.mcp_names
            self.tools += self.mcp_tools
            self._list_mcp_tools(mcp)
        self.hosted, self.hosted_names = (
            hosted,
            {t["name"] for t in params.get("tools") or [] if t.get("hosted") and t["name"] in hosted},
        )
        timeout = float(openresponses_settings.TOOL_TIMEOUT)
        # (A taken-over loop never makes them again: made before, or possibly made, by the lost one.)
        approved = [] if self.resumed else self._approved_mcp_calls()
        if approved:
            await self._run_calls([], approved, mcp, timeout)
        middleware = loop_middleware()
        max_iterations = int(openresponses_settings.MAX_LOOP_ITERATIONS)
        max_tool_calls = params.get("max_tool_calls")
        durable = self.checkpoints.state if self.resumed else {}
        tool_calls = durable.get("tool_calls", 0)
        first = durable.get("iteration", -1) + (0 if durable.get("stage") == "sampled" else 1)
        for iteration in range(first if self.resumed else 0, max_iterations):
            self.iterations = iteration + 1
            context = LoopContext(
                response.id, response.model, response.provider, iteration, self._model_request(self.tools)
            )
            resuming = durable.get("stage") == "sampled" and durable.get("iteration") == iteration
            if resuming:
                # Taken over after this sample completed: carry on with its tool calls.
                by_id = {item["id"]: item for item in self.emitter.output}
                context.sample_items = [by_id[i] for i in durable.get("sample_items", []) if i in by_id]
                self.emitter.finish_reason = durable.get("finish_reason")
            else:
                if middleware:  # (a site's hooks run for a started response only)
                    await self.start_stored()
                await call_hook(middleware, "before_sample", context)
                self.emitter.start_sample()
                try:
                    # The route's fallback providers answer if this one fails before its first byte.
                    completed, adapter = await sample_with_fallbacks(
                        self, adapter, context.model_request, cancel
                    )
                finally:
                    self.emitter.end_sample()  # a failed or cancelled sample's usage counts too
                if not completed:
                    return Outcome("cancelled")
                context.sample_items = self.emitter.sample_items
                await call_hook(middleware, "after_sample", context)
            durable = {}
            reason = self.emitter.finish_reason
            if reason == "max_output_tokens":
                return Outcome("incomplete", incomplete_reason="max_output_tokens")
            if reason == "content_filter":
                return Outcome("incomplete", incomplete_reason="content_filter")
            calls = [i for i in context.sample_items if i.get("type") in CALL_TYPES]
            mcp_calls = [i for i in context.sample_items if i.get("type") == "mcp_call"]
            if not calls and not mcp_calls:
                if reason == "pause_turn":
                    # The provider paused its own long turn (a search it runs): sent what it said so
                    # far, it carries on where it stopped.
                    await self._checkpoint(stage="tools_done", iteration=iteration, tool_calls=tool_calls)
                    continue
                return Outcome("completed")
            # Only tools this request offered as hosted (or listed from its MCP servers) run here;
            # any other call, a name the request never declared included, is the client's.
            to_run = [
                c
                for c in calls
                if c["type"] == "function_call" and not c.get("namespace") and c["name"] in self.hosted_names
            ]
            gated = [c for c in mcp_calls if self._needs_approval(mcp, c)]
            mcp_to_run = [c for c in mcp_calls if c not in gated]
            if not resuming:  # (a resumed sample's approval requests are in its output already)
                for call in gated:
                    self._request_approval(call)
            if to_run or mcp_to_run:
                tool_calls += len(to_run) + len(mcp_to_run)
                if max_tool_calls is not None and tool_calls > max_tool_calls:
                    return Outcome("incomplete", incomplete_reason="max_tool_calls")
                if not resuming:
                    await self._checkpoint(
                        stage="sampled",
                        iteration=iteration,
                        sample_items=[item["id"] for item in context.sample_items],
                        finish_reason=reason,
                        tool_calls=tool_calls - len(to_run) - len(mcp_to_run),
                        tools={},
                    )
                refusal = self._not_retryable(to_run + mcp_to_run, mcp)
                if refusal is not None:
                    return refusal
                await self._run_calls(to_run, mcp_to_run, mcp, timeout)
                await self._checkpoint(stage="tools_done", iteration=iteration, tool_calls=tool_calls)
            if len(to_run) < len(calls) or gated or not (to_run or mcp_to_run):
                # Client calls and MCP calls awaiting approval end the turn.
                return Outcome("completed")
            if cancel.is_set():
                return Outcome("cancelled")
        return Outcome("incomplete", incomplete_reason="max_iterations")

    # ---- tools the loop runs

    async def _run_calls(
        self,
        hosted_calls: list[dict[str, Any]],
        mcp_calls: list[dict[str, Any]],
        mcp: McpToolset,
        timeout: float,
    ) -> None:
        """Run hosted and MCP calls concurrently; each error or timeout becomes that call's output.

        Each call is recorded as started, then with its result (``loop/durability.py``): a call
        whose result is stored (or already in the output) is never run again after a takeover;
        one that may have started runs again with the same idempotency key.
        """
        await self.start_stored()
        known = {key: entry["output"] for key, entry in self.checkpoints.tools.items() if "output" in entry}
        pending = [
            c for c in hosted_calls + mcp_calls if _call_key(c) not in known and not self._has_output(c)
        ]
        await self.checkpoints.tools_started([_call_key(c) for c in pending])

        async def run_one(call: dict[str, Any]) -> None:
            key = idempotency_key(self.response.id, _call_key(call))
            if call["type"] == "mcp_call":
                result: Any = await traced_tool_call(call["name"], self._call_mcp(mcp, call, timeout, key))
            else:
                result = await traced_tool_call(
                    call["name"],
                    self.hosted[call["name"]].call(call["arguments"], timeout, idempotency_key=key),
                )
            known[_call_key(call)] = result
            await self.checkpoints.tool_done(_call_key(call), result)

        await asyncio.gather(*(run_one(c) for c in pending))
        results = [known.get(_call_key(c)) for c in hosted_calls + mcp_calls]
        for call, output in zip(hosted_calls, results, strict=False):
            if self._has_output(call):
                continue
            self.emitter.add_item(
                {
                    "type": "function_call_output",
                    "id": function_call_output_id(),
                    "call_id": call["call_id"],
                    "output": output,
                    "status": "completed",
                }
            )
        for call, result in zip(mcp_calls, results[len(hosted_calls) :], strict=True):
            if result is None:  # (its output item is in the log already)
                continue
            output, error = result
            item = {k: v for k, v in call.items() if k != "status"}
            item.update(
                output=output,
                error=mcp_error(error) if error is not None else None,
                status="failed" if error is not None else "completed",
            )
            self.emitter.add_item(item)

    async def _call_mcp(
        self, mcp: McpToolset, call: dict[str, Any], timeout: float, key: str | None = None
    ) -> tuple[str | None, str | None]:
        tool = mcp.tool_for(call["server_label"], call["name"])
        if tool is None:
            return None, f"The MCP server '{call['server_label']}' offers no tool '{call['name']}' here."
        return await mcp.call(tool.exposed, call["arguments"], timeout, idempotency_key=key)

    def _has_output(self, call: dict[str, Any]) -> bool:
        """Whether the output of a hosted call is in the output already (emitted before a takeover)."""
        return call["type"] != "mcp_call" and any(
            item.get("type") == "function_call_output" and item.get("call_id") == call["call_id"]
            for item in self.emitter.output
        )

    async def _checkpoint(self, **state: Any) -> None:
        """Record a completed step durably: its events stored first, then the checkpoint."""
        await self.start_stored()
        await self.sink.drain()
        emitter = self.emitter
        await self.checkpoints.save(
            items=len(emitter.output),
            usage=emitter.usage,
            item_meta=emitter.item_meta,
            first_output_at=emitter.first_output_at,
            **state,
        )

    def _not_retryable(self, calls: list[dict[str, Any]], mcp: McpToolset) -> Outcome | None:
        """A failure when a call that may have run before the takeover must not run again."""
        for call in calls:
            entry = self.checkpoints.tools.get(_call_key(call))
            if entry is None or "output" in entry or self._has_output(call):
                continue
            if call["type"] == "mcp_call":
                tool = mcp.tool_for(call["server_label"], call["name"])
                safe = tool is not None and tool.retry_safe
            else:
                safe = self.hosted[call["name"]].retry_safe
            if not safe:
                return Outcome(
                    "failed",
                    {
                        "code": "tool_not_retryable",
                        "message": f"The worker running tool {call['name']} was lost during the call, and "
                        "the tool is not safe to run again.",
                        "type": "server_error",
                        "param": None,
                        "status": 500,
                    },
                )
        return None

    def _needs_approval(self, mcp: McpToolset, call: dict[str, Any]) -> bool:
        tool = mcp.tool_for(call["server_label"], call["name"])
        return tool is None or tool.needs_approval

    def _request_approval(self, call: dict[str, Any]) -> None:
        """End the turn on an ``mcp_approval_request`` for ``call`` (the model's provider artefacts,
        e.g. a Gemini thought signature, stay with it for the next sample)."""
        item = {
            "type": "mcp_approval_request",
            "id": mcp_approval_request_id(),
            "server_label": call["server_label"],
            "name": call["name"],
            "arguments": call["arguments"],
        }
        meta = self.emitter.item_meta.pop(call["id"], None)
        if meta:
            self.emitter.item_meta[item["id"]] = meta
        self.emitter.add_item(item)

    def _list_mcp_tools(self, mcp: McpToolset) -> None:
        """An ``mcp_list_tools`` item per server whose listing the conversation does not hold yet."""
        known = {i.get("server_label") for i in self.context if i.get("type") == "mcp_list_tools"}
        for label, tools in mcp.listed.items():
            if label not in known:
                self.emitter.add_item(
                    {
                        "type": "mcp_list_tools",
                        "id": mcp_list_tools_id(),
                        "server_label": label,
                        "tools": tools,
                        "error": None,
                    }
                )

    def _approved_mcp_calls(self) -> list[dict[str, Any]]:
        """The calls the client approved (``mcp_approval_response``) and the loop has not made yet."""
        requests = {i["id"]: i for i in self.context if i.get("type") == "mcp_approval_request"}
        made = {i.get("approval_request_id") for i in self.context if i.get("type") == "mcp_call"}
        calls = []
        for answer in self.context:
            if answer.get("type") != "mcp_approval_response" or not answer.get("approve"):
                continue
            request = requests.get(answer.get("approval_request_id"))
            if request is None or request["id"] in made:
                continue
            made.add(request["id"])
            call = {
                "type": "mcp_call",
                "id": mcp_call_id(),
                "server_label": request.get("server_label") or "",
                "name": request.get("name") or "",
                "arguments": request.get("arguments") or "{}",
                "approval_request_id": request["id"],
            }
            if request.get("_meta"):
                self.emitter.item_meta[call["id"]] = request["_meta"]
            calls.append(call)
        return calls


def _call_key(call: dict[str, Any]) -> str:
    """A tool call's key in the checkpoint: its ``call_id`` (an MCP call: its item id)."""
    return call.get("call_id") or call["id"]


async def resume_response(
    response_id: str, *, takeover: int, on_start: Callable[[], None] | None = None
) -> str | None:
    """Carry on the loop of a response taken over from a lost worker (takeover number ``takeover``).

    Returns its final status, None when this takeover is stale or was claimed already.
    ``on_start``: called once the claim is stored (its heartbeat with it).
    """
    loaded = await run_db(response_claim_resume, response_id=response_id, takeover=takeover)
    if loaded is None:
        return None
    if on_start is not None:
        on_start()
    response, context, events = HeldResponse.of(loaded[0]), loaded[1], loaded[2]
    del loaded  # (the loop holds its response's values, not the model: loop/held.py)
    bind_log_context(request_id=response.request_id, response_id=response.id)
    logger.warning("taking over response %s (takeover %d)", response.id, takeover)
    return await LoopRun(response, context, resumed=events).run()


async def run_response(
    response_id: str,
    *,
    started: Response | None = None,
    on_start: Callable[[], None] | None = None,
    carried: str | None = None,
) -> str | None:
    """Run a queued response's loop to a terminal state; returns that status (None if not runnable).

    ``started``: the response as stored already started, with its ``context_items`` (in-process
    dispatch: the loop needs no round trip to the store before sampling). ``on_start``: called
    once the start is stored (from then on the reaper takes the response over if this process
    is lost), just before the loop begins. ``carried``: the queued response and its context as
    its message carried them (``dispatch.carried_start``): the loop begins while its start is
    being stored (:func:`_run_carried`).
    """
    if carried is not None and started is None:
        try:
            queued, context = response_from_carried(carried)
            response = HeldResponse.of(pg.carried_started(queued, time.time()))
            del queued
        except Exception:  # noqa: BLE001 - a message this worker cannot read: the ordinary start
            logger.exception("the start carried by the message of %s is unreadable", response_id)
        else:
            if response.id == response_id:
                carried = None  # (its text is not held for the loop's life)
                return await _run_carried(response, context, on_start)
    if started is not None and hasattr(started, "context_items"):
        response, context = HeldResponse.of(started), started.context_items
        started = None  # (the loop holds its response's values, not the model: loop/held.py)
    else:
        loaded = await _start(response_id)
        if loaded is None:
            return None
        response, context = HeldResponse.of(loaded[0]), loaded[1]
        del loaded
    if on_start is not None:
        on_start()
    # This loop's log lines carry its ids, in any process.
    bind_log_context(request_id=response.request_id, response_id=response.id)
    return await LoopRun(response, context).run()


async def _start_carried(response_id: str, now: float) -> int | None:
    """queued → in_progress at ``now``, nothing read back: the attempts stored, None when this
    call did not start it. On PostgreSQL one prepared statement on this event loop's connection,
    else the ORM's conditional UPDATE on a loop-database thread."""
    if pg.enabled():
        return await pg.start_carried(response_id, now)
    return await run_db(response_start_at, response_id=response_id, now=now)


async def _run_carried(
    response: HeldResponse, context: list[dict[str, Any]], on_start: Callable[[], None] | None
) -> str | None:
    """Run the loop of a response whose message carried it, while its start is stored.

    The start statement goes out first; the loop then builds and sends its upstream request
    while PostgreSQL applies and commits it, so the start's round trip and commit leave the way
    to the first token. The loop stores and sends nothing before the start is stored
    (``LoopRun(stored=...)``: its first events' INSERT waits for it), and ``on_start`` (the
    task's return, so the message's ack) comes only then. A start that does not apply (the
    response was started by another run, cancelled or deleted) cancels the loop, its upstream
    request with it, and drops its events unsent; the response then starts the ordinary way,
    which reads it again (a response cancelled before it started still gets its terminal event).
    """
    loop = asyncio.get_running_loop()
    stored: asyncio.Future[bool] = loop.create_future()
    bind_log_context(request_id=response.request_id, response_id=response.id)
    runs: list[LoopRun] = []

    async def begin() -> str:
        # Made here, after the start statement went out (the tasks run in the order they were
        # made): building the run is CPU the statement need not wait for.
        run = LoopRun(response, context, stored=stored)
        runs.append(run)
        if stored.done() and stored.result():  # (stored before this task's first turn)
            run.watch()
        return await run.run()

    starting = loop.create_task(_start_carried(response.id, response.started_at))
    running = loop.create_task(begin())
    try:
        attempts = await asyncio.shield(starting)
    except asyncio.CancelledError:
        running.cancel()
        raise
    except Exception:  # noqa: BLE001 - not stored: the ordinary start below reads it again
        logger.exception("starting %s on the loop's connection failed", response.id)
        attempts = None
    if attempts is None:
        stored.set_result(False)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for run in runs:
            run.sink.abandon()
        return await run_response(response.id, on_start=on_start)
    response.attempts = attempts
    for run in runs:  # (made as soon as the statement went out: before its answer came)
        run.watch()
    stored.set_result(True)
    if on_start is not None:
        on_start()
    return await running
