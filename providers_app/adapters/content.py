"""Content helpers shared by every adapter: content parts, data URLs, MIME types, arguments.

One place for the rules, so every provider reads a data URL, guesses a file's type and joins a
message's text the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from providers_app.adapters.types import UnsupportedParameter

#: Content-part types that hold plain text.
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of part dicts (a bare string becomes one ``input_text``)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    return [part for part in content if isinstance(part, dict)]


def part_text(part: dict[str, Any]) -> str:
    """The text of a text or refusal part ("" for other parts)."""
    return part.get("text") or part.get("refusal") or ""


def message_text(item: dict[str, Any]) -> str:
    """The plain text of a canonical message item (its text parts joined)."""
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in item.get("content") or []
        if isinstance(part, dict)
    )


def parse_arguments(arguments: str | None) -> Any:
    """Function-call arguments (a JSON string) as an object; ``{}`` when empty or invalid."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


# --------------------------------------------------------------------------- data URLs and MIME types


@dataclass(frozen=True, slots=True)
class DataURL:
    """A parsed ``data:[<mime>][;params][;base64],<payload>`` URL."""

    mime: str | None  # lower-cased; None when the URL names none
    is_base64: bool
    payload: str  # as written after the comma

    def base64(self) -> str:
        """The payload base64-encoded (a percent-encoded payload is decoded, then encoded)."""
        if self.is_base64:
            return self.payload
        return base64.b64encode(unquote_to_bytes(self.payload)).decode()

    def text(self, param: str = "input") -> str:
        """The payload as UTF-8 text; :class:`UnsupportedParameter` naming ``param`` if it is not."""
        try:
            raw = base64.b64decode(self.payload) if self.is_base64 else unquote_to_bytes(self.payload)
            return raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise UnsupportedParameter(param, "Text file data is not valid base64 UTF-8.") from None


def parse_data_url(url: str, param: str = "input") -> DataURL:
    """Parse a data URL; :class:`UnsupportedParameter` naming ``param`` when it is malformed."""
    if not url.startswith("data:") or "," not in url:
        raise UnsupportedParameter(param, "Malformed data URL in an input part.")
    head, _, payload = url[5:].partition(",")
    params = [p.strip() for p in head.split(";")]
    mime = params[0].lower() or None
    if mime is not None and "/" not in mime:
        raise UnsupportedParameter(param, "Malformed data URL in an input part.")
    return DataURL(mime, "base64" in (p.lower() for p in params[1:]), payload)


def guess_mime(name: str | None, default: str, *, unknown: str | None = None) -> str:
    """The MIME type of a file name or URL from its extension (query and fragment ignored):
    ``default`` without a name or an extension, ``unknown`` (if given) for an extension no
    one knows."""
    if not name:
        return default
    path = name.split("?", 1)[0].split("#", 1)[0]
    found = mimetypes.guess_type(path, strict=False)[0]
    if found is None and unknown is not None and "." in path.rsplit("/", 1)[-1]:
        return unknown
    return found or default


def is_base64(data: str) -> bool:
    """True when ``data`` is strict base64."""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def image_url(part: dict[str, Any]) -> str | None:
    """The URL of an ``input_image`` part (Chat-style ``{"url": ...}`` accepted too)."""
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    return url or None


def inline_file(
    part: dict[str, Any],
    *,
    default_mime: str = "application/pdf",
    unknown: str | None = None,
    param: str = "input",
) -> DataURL:
    """An ``input_file``'s ``file_data`` (a data URL or bare base64) as a :class:`DataURL`; bare
    base64 gets the MIME type of its ``filename`` (see :func:`guess_mime`)."""
    data = part["file_data"]
    mime = guess_mime(part.get("filename"), default_mime, unknown=unknown)
    if data.startswith("data:"):
        parsed = parse_data_url(data, param)
        return parsed if parsed.mime is not None else DataURL(mime, parsed.is_base64, parsed.payload)
    return DataURL(mime, True, data)


def file_data_url(part: dict[str, Any]) -> str:
    """An ``input_file``'s ``file_data`` as a data URL (as given when it already is one)."""
    data = part["file_data"]
    if data.startswith("data:"):
        return data
    return f"data:{guess_mime(part.get('filename'), 'application/pdf')};base64,{data}"
