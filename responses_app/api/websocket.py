"""WebSocket mode on ``/v1/responses``: one ``response.create`` message per turn, SSE events back.

Each turn goes through the same validation and create flow (``services.flows.create``), bus and
reader as an HTTP stream; only the framing differs (one event JSON per text message, nothing after
the terminal event). As Codex CLI drives it: ``generate: false`` prewarms (no sample),
``stream`` is ignored, ``client_metadata`` accepted, ``background`` refused.
Turns on one connection run one after another, in the order their messages arrived.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlparse

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.http import QueryDict
from django.http.request import HttpHeaders

from responses_app.api.validation import parse_json, validate_create
from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError, invalid
from responses_app.events.bus import Subscription
from responses_app.events.reader import follow
from responses_app.gateway.auth import ClientIdentity, authenticate
from responses_app.observability.logs import bind as bind_log_context
from responses_app.observability.logs import new_request_id
from responses_app.services import flows
from responses_app.states import TERMINAL_EVENT_TYPES

logger = logging.getLogger(__name__)
MAX_PENDING_TURNS = 64


class HandshakeRequest:
    """The upgrade request as an authentication hook sees it: ``headers``, ``META``, ``GET``, ``path``."""

    method = "GET"

    def __init__(self, scope: dict[str, Any]) -> None:
        meta: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or []:
            name = raw_name.decode("latin1").upper().replace("-", "_")
            value = raw_value.decode("latin1")
            key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
            meta[key] = f"{meta[key]},{value}" if key in meta else value
        client = scope.get("client") or (None, None)
        meta["REMOTE_ADDR"] = client[0] or ""
        self.META = meta
        self.headers = HttpHeaders(meta)
        self.path = scope.get("path", "")
        self.GET = QueryDict(scope.get("query_string", b"").decode("latin1"))
        self.scope = scope


def allowed_origins() -> list[str]:
    """``OPENRESPONSES["ALLOWED_ORIGINS"]``, else the site's ``ALLOWED_HOSTS`` (any scheme and port)."""
    configured = openresponses_settings.ALLOWED_ORIGINS
    if configured is not None and configured != "":
        if isinstance(configured, str):
            return [o.strip() for o in configured.split(",") if o.strip()]
        return [str(o) for o in configured]
    from django.conf import settings

    return list(settings.ALLOWED_HOSTS)


def origin_allowed(scope: dict[str, Any]) -> bool:
    """A browser's ``Origin`` must be allowed; a client that sends none (SDKs, curl) is not a browser.

    Browsers open WebSockets cross-site without any CORS check, so without this a page on any
    site could run requests with the server's provider keys through a local server in open mode.
    """
    origins = [value for name, value in scope.get("headers") or [] if name.lower() == b"origin"]
    if not origins:
        return True
    try:
        parsed = urlparse(origins[-1].decode("latin1"))
    except UnicodeDecodeError:
        return False
    return OriginValidator(None, allowed_origins()).valid_origin(parsed)


def error_event(
    status: int, code: str | None, message: str, *, error_type: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """A ``WebSocketErrorEvent``."""
    error: dict[str, Any] = {
        "type": error_type or "invalid_request_error",
        "code": code or error_type or "error",
        "message": message,
        "param": param,
    }
    return {"type": "error", "status": status, "error": error}


def api_error_event(exc: ApiError) -> dict[str, Any]:
    return error_event(exc.status, exc.code, exc.message, error_type=exc.error_type, param=exc.param)


def _websocket_only_fields(body: dict[str, Any]) -> bool:
    """Take out the fields only a WebSocket ``response.create`` has; returns ``generate``.

    ``generate: false`` (a prewarm, as Codex sends before its first turn) stores the context and
    answers with a completed, empty response that the next turn continues; ``client_metadata``
    (strings about the client, for its own telemetry) is accepted and not forwarded.
    """
    generate = body.pop("generate", True)
    if not isinstance(generate, bool):
        raise invalid("Invalid type for 'generate': expected a boolean.", "generate", "invalid_type")
    metadata = body.pop("client_metadata", None)
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise invalid(
            "Invalid type for 'client_metadata': expected an object of strings.",
            "client_metadata",
            "invalid_type",
        )
    return generate


class ResponsesConsumer(AsyncWebsocketConsumer):
    """One client connection: authenticate on the upgrade, then run its turns in order."""

    async def connect(self) -> None:
        self.identity: ClientIdentity | None = None
        #: ``store: false`` responses made on this connection: only it may continue them.
        self.unstored: set[str] = set()
        self.pending: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.running: str | None = None
        self.worker: asyncio.Task | None = None
        self.refused = False
        if not origin_allowed(self.scope):
            logger.warning("WebSocket refused: Origin not allowed")
            self.refused = True
            await self.close()  # before accept: the handshake is answered with 403
            return
        await self.accept()
        try:
            self.identity = await database_sync_to_async(authenticate)(HandshakeRequest(self.scope))
        except ApiError as exc:
            self.refused = True
            await self.send_json(api_error_event(exc))
            await self.close(code=4000 + exc.status)  # 4401: application close codes are 4000-4999
            return
        self.worker = asyncio.ensure_future(self._work())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # A refused connection is closing: whatever it still sends is ignored.
        if self.refused:
            return
        if self.pending.qsize() >= MAX_PENDING_TURNS:
            await self.send_json(
                error_event(
                    429,
                    "too_many_pending_turns",
                    f"At most {MAX_PENDING_TURNS} messages may wait for the running turn.",
                    error_type="too_many_requests",
                )
            )
            return
        self.pending.put_nowait(text_data if text_data is not None else bytes_data or b"")

    async def disconnect(self, code: int) -> None:
        worker, self.worker = getattr(self, "worker", None), None
        running = getattr(self, "running", None)
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        # Like a dropped SSE stream: the running turn goes on (and is stored) unless configured otherwise.
        identity = getattr(self, "identity", None)
        if running and openresponses_settings.DISCONNECT_CANCELS and identity is not None:
            try:
                await flows.cancel(response_id=running, owner=identity.owner, include_unstored=True)
            except ApiError:  # deleted meanwhile: nothing left to cancel
                pass

    async def send_json(self, data: dict[str, Any]) -> None:
        # ASCII: an error may quote what the client sent, and a text frame must be valid UTF-8.
        await self.send(text_data=json.dumps(data, separators=(",", ":")))

    async def _work(self) -> None:
        while True:
            raw = await self.pending.get()
            try:
                try:
                    await self._turn(raw)
                except ApiError as exc:
                    await self.send_json(api_error_event(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                # Whatever fails (even sending an error), the connection goes on serving its turns.
                logger.exception("WebSocket turn failed")
                await self.send_json(
                    error_event(
                        500,
                        "server_error",
                        "The server failed to handle the message.",
                        error_type="server_error",
                    )
                )

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        message = parse_json(raw, "message")
        if not isinstance(message, dict):
            raise invalid("A message must be a JSON object with a 'type'.", None, "invalid_message")
        kind = message.get("type")
        if kind != "response.create":
            raise invalid(
                f"Unknown message type {kind!r}: the only client message is 'response.create'.",
                "type",
                "unknown_message_type",
            )
        return {k: v for k, v in message.items() if k != "type"}

    async def _turn(self, raw: str | bytes) -> None:
        assert self.identity is not None
        body = self._parse(raw)
        previous = body.get("previous_response_id")
        cached = previous if isinstance(previous, str) and previous in self.unstored else None
        try:
            generate = _websocket_only_fields(body)
            create = validate_create(body, hosted_tool_names=flows.hosted_tool_names(), websocket=True)
            create.stream = True
            request_id = new_request_id()  # one per turn: on the response row and in the loop's log lines
            bind_log_context(request_id=request_id)
            created = await flows.create(
                request=create,
                identity=self.identity,
                request_id=request_id,
                unstored_ids=self.unstored,
                generate=generate,
            )
        except ApiError:
            # A failed continuation forgets the response it continued (the client must start over).
            self.unstored.discard(cached or "")
            raise
        response_id = created.response.id
        if not create.store:
            self.unstored.add(response_id)
        assert created.subscription is not None
        ok = await self._relay(response_id, created.subscription)
        if not ok and cached:
            self.unstored.discard(cached)

    async def _relay(self, response_id: str, subscription: Subscription) -> bool:
        """Send the turn's events; False when it failed. Nothing is sent after its terminal event."""
        self.running = response_id
        try:
            async for batch in follow(
                response_id,
                subscription,
                catch_up=False,
                keepalive=float(openresponses_settings.KEEPALIVE_SECONDS),
            ):
                for _, event_type, payload in batch:
                    if event_type == "error":
                        # The spec's WebSocket error event ends the turn for clients: add its status, stop here.
                        await self.send_json(await self._with_status(response_id, json.loads(payload)))
                        return False
                    await self.send(text_data=payload)
                    if event_type in TERMINAL_EVENT_TYPES:
                        return event_type != "response.failed"
            await self.send_json(
                error_event(
                    500,
                    "stream_interrupted",
                    "The response ended without a terminal event.",
                    error_type="server_error",
                )
            )
            return False
        finally:
            self.running = None
            await subscription.close()

    async def _with_status(self, response_id: str, event: dict[str, Any]) -> dict[str, Any]:
        stored = await flows.stored_error(response_id) or {}
        error = dict(event.get("error") or {})
        error["code"] = error.get("code") or stored.get("code") or "server_error"
        error["message"] = error.get("message") or stored.get("message") or "The response failed."
        return {
            "type": "error",
            "status": int(stored.get("status") or 500),
            "sequence_number": event.get("sequence_number"),
            "error": error,
        }
