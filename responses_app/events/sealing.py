"""Reasoning artefacts sealed into ``encrypted_content``, so a ``store: false`` client can carry them.

A provider's opaque reasoning data (Anthropic's thinking signature or redacted-thinking data,
Gemini's thought signatures, OpenAI's own encrypted reasoning) is what lets the same provider
continue a chain. When ``include`` asks for ``reasoning.encrypted_content`` the emitter seals,
per reasoning item, ``{provider, family, content, meta}`` under the ``reasoning`` purpose key
(:mod:`providers_app.secrets`): ``content`` is the provider's own ``encrypted_content`` and
``meta`` the item's private metadata the adapters read. On the way back :func:`open_items`
restores both on the item, exactly as a stored item has them, for the provider that made it;
for any other provider, or when the blob does not open (altered, made elsewhere, under a
removed key), the reasoning item is dropped: it is never forwarded raw and never an error.
The core treats ``content`` and ``meta`` as opaque: what goes in them is each adapter's business.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

INCLUDE = "reasoning.encrypted_content"
TOKEN_PREFIX = "orr1."
_KIND = "reasoning"


def wanted(include: Any) -> bool:
    """True when the request's ``include`` asks for sealed reasoning."""
    return isinstance(include, (list, tuple)) and INCLUDE in include


def item_key(item: dict[str, Any]) -> str:
    """How a carried item is found again in a client's input: its ``call_id``, else its ``id``."""
    return f"call:{item['call_id']}" if item.get("call_id") else f"id:{item.get('id') or ''}"


def seal(
    provider: str,
    family: str,
    content: str | None,
    meta: dict[str, Any],
    *,
    items: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The ``encrypted_content`` carrying one reasoning item's provider artefacts (and, in
    ``items``, the private metadata of other items of the same answer, by :func:`item_key`)."""
    from providers_app.secrets import REASONING, seal_bytes

    payload: dict[str, Any] = {
        "kind": _KIND,
        "provider": provider,
        "family": family,
        "content": content,
        "meta": meta,
    }
    if items:
        payload["items"] = items
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return TOKEN_PREFIX + seal_bytes(zlib.compress(raw, 6), REASONING)


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def unseal(token: str) -> dict[str, Any] | None:
    """The sealed payload, or None when ``token`` is not one this server made (or was altered)."""
    from providers_app.secrets import REASONING, unseal_bytes

    if not is_sealed(token):
        return None
    try:
        payload = json.loads(zlib.decompress(unseal_bytes(token[len(TOKEN_PREFIX) :], REASONING)))
    except Exception:  # noqa: BLE001 - a bad key, base64, zlib or JSON all mean "not ours"
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("kind") != _KIND
        or not isinstance(payload.get("meta"), dict)
    ):
        return None
    return payload


def open_items(items: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """``items`` with each sealed reasoning item opened for ``provider``: its provider's
    ``encrypted_content`` and private ``_meta`` restored (and those of the items it carries), or
    the item dropped when it was sealed for another provider or does not open. An empty carrier
    (nothing but other items' data) is dropped once its data is back on those items."""
    out: list[dict[str, Any]] = []
    carried: dict[str, dict[str, Any]] = {}
    for item in items:
        token = item.get("encrypted_content") if item.get("type") == "reasoning" else None
        if not is_sealed(token):
            out.append(item)
            continue
        payload = unseal(token)  # type: ignore[arg-type]
        if payload is None or not provider or payload.get("provider") != provider:
            continue
        if isinstance(payload.get("items"), dict):
            carried.update(payload["items"])
        meta = {k: v for k, v in payload["meta"].items() if k != "provider"}
        if payload.get("content") is None and not meta and not item.get("summary"):
            continue  # a carrier only
        opened = {k: v for k, v in item.items() if k != "encrypted_content"}
        if payload.get("content") is not None:
            opened["encrypted_content"] = payload["content"]
        opened["_meta"] = {**(item.get("_meta") or {}), **meta, "provider": provider}
        out.append(opened)
    if not carried:
        return out
    restored = []
    for item in out:
        data = carried.get(item_key(item)) if item.get("type") != "reasoning" else None
        if isinstance(data, dict) and not item.get("_meta"):
            item = {**item, "_meta": {**data, "provider": provider}}
        restored.append(item)
    return restored
