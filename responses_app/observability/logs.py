"""Structured logs: a request id on every line, an optional JSON formatter, no prompts by default.

Each API request gets a fresh id (``req_…``), answered in the ``X-Request-Id`` header and stored on
the response it creates; the loop binds it again wherever it runs (a Celery worker too), so
:class:`RequestIdFilter` puts the same id on every line about that request. The JSON formatter
is chosen with ``OPENRESPONSES_LOG_FORMAT=json`` in the standalone server (see ``LOGGING``).

Control characters in a message are escaped by both formatters: a client's newline never makes a
log line of its own. Prompts and keys are never logged unless ``OPENRESPONSES["LOG_PROMPTS"]`` is on, and then only
through :func:`log_prompt`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("openresponses_request_id", default="")
response_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("openresponses_response_id", default="")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (``\\n``, ``\\x1b``, ``\\u2028``).

    Logged fields carry what clients sent (a model name, a key name): a newline in one must not
    start a forged log line, nor an ANSI sequence rewrite a terminal.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def bind(*, request_id: str = "", response_id: str = "") -> None:
    """Tag the current context (a request, or one loop's task) for log lines."""
    if request_id:
        request_id_var.set(request_id)
    if response_id:
        response_id_var.set(response_id)


def current_request_id() -> str:
    return request_id_var.get()


def client_request_id(value: str | None) -> str:
    """A client's own ``X-Request-Id`` when it is short and plain (logged beside ours), else ''."""
    return value if value and _SAFE_ID.match(value) else ""


def prompts_logged() -> bool:
    from responses_app.conf import openresponses_settings

    value = openresponses_settings.LOG_PROMPTS
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def log_prompt(logger: logging.Logger, response_id: str, text: str) -> None:
    """Log a prompt, only when the operator turned prompt logging on."""
    if prompts_logged():
        logger.info("prompt of %s: %s", response_id, text[:4000])


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` and ``response_id`` attributes (possibly empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        if not getattr(record, "response_id", ""):
            record.response_id = response_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, response_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": escape_control(record.getMessage()),
        }
        for name in ("request_id", "response_id"):
            value = getattr(record, name, "")
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """The plain format with ``[request id]`` when there is one; one line per message (control
    characters escaped; a traceback's lines follow, indented by Python)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_control(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "")
        return f"{text} [{request_id}]" if request_id else text
