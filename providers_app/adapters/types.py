"""What crosses the adapter boundary besides chunks: the request, a provider's config, the errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- request and config


@dataclass(slots=True)
class ModelRequest:
    """What the loop asks of a provider for one sample, in Open Responses terms.

    ``items`` are canonical input items (Open Responses item shapes: messages always with a
    content list, ``function_call``, ``function_call_output``, ``reasoning``). An item may carry
    a private ``"_meta"`` dict: ``{"provider": <provider name>, ...provider_data}``; adapters send
    provider artefacts back only when ``_meta["provider"] == self.config.name``.
    """

    model: str
    items: list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderConfig:
    """One configured provider: where it is and how to reach it."""

    name: str
    adapter: str
    base_url: str = ""
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 120.0
    max_retries: int = 2
    options: dict[str, Any] = field(default_factory=dict)


def refused_tools(request: ModelRequest) -> set[str]:
    """Declared tools the model may not call now: all under ``tool_choice: "none"`` (or an
    ``allowed_tools`` of mode ``none``), else those left out of ``allowed_tools``.

    A name the request never declared is not refused: it reaches the client as the call it was.
    """
    declared = {t.get("name") for t in request.tools if t.get("name")}
    choice = request.tool_choice
    if choice == "none":
        return declared
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        if choice.get("mode") == "none":
            return declared
        return declared - {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
    return set()


# --------------------------------------------------------------------------- errors


class UpstreamError(Exception):
    """A provider failed. ``status`` is the HTTP status we answer with (502, 504, 429, 400…)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        code: str = "upstream_error",
        error_type: str = "server_error",
        param: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.retryable = retryable


class UnsupportedParameter(UpstreamError):
    """The request asks for something this provider cannot honour: answered with 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(
            message, status=400, code="unsupported_parameter", error_type="invalid_request_error", param=param
        )


def rate_limited(message: str, *, retry_after: float | None = 1.0, retryable: bool = False) -> UpstreamError:
    """A 429 ``rate_limit_exceeded`` (from an HTTP status or an error frame inside a stream)."""
    return UpstreamError(
        message,
        status=429,
        code="rate_limit_exceeded",
        error_type="too_many_requests",
        retry_after=retry_after,
        retryable=retryable,
    )


def invalid_request(message: str, *, param: str | None = None) -> UpstreamError:
    """The provider refused the request as invalid: a 400 ``upstream_invalid_request``."""
    return UpstreamError(
        message, status=400, code="upstream_invalid_request", error_type="invalid_request_error", param=param
    )


def truncated(provider: str) -> UpstreamError:
    """The answer ended (connection closed cleanly) before the provider said it was finished."""
    return UpstreamError(
        f"The provider '{provider}' ended the stream before finishing.",
        status=502,
        code="upstream_disconnected",
    )


def unexpected_body(provider: str) -> UpstreamError:
    """A JSON answer of the wrong shape (not an object)."""
    return UpstreamError(f"The provider '{provider}' sent an unexpected body.", status=502)


def extract_error_message(raw: bytes | str) -> str:
    """The human message of a provider error body (OpenAI, Anthropic, Gemini, Ollama shapes)."""
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return text.strip()[:500]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or json.dumps(error)[:500])
        if isinstance(error, str):
            return error
    return json.dumps(body)[:500]


def extract_error_param(raw: bytes | str) -> str | None:
    """The ``error.param`` of an OpenAI-shaped error body (the request field at fault), if any."""
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    return param if isinstance(param, str) and param else None


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the delta-seconds form; None when absent or a date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
