"""The reasoning seal: opens only for the provider that made it, and only when unaltered."""

from __future__ import annotations

from providers_app.secrets import COMPACTION, seal_bytes
from responses_app.events import sealing


def _item(token: str) -> dict:
    return {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": token}


def test_opens_for_its_provider_with_content_and_meta(settings):
    token = sealing.seal("anthropic", "anthropic", "sig-1", {"provider": "anthropic", "type": "thinking"})
    assert "sig-1" not in token
    (opened,) = sealing.open_items([_item(token)], "anthropic")
    assert opened["encrypted_content"] == "sig-1"
    assert opened["_meta"] == {"type": "thinking", "provider": "anthropic"}


def test_other_provider_altered_or_foreign_tokens_are_dropped(settings):
    token = sealing.seal("anthropic", "anthropic", "sig-1", {"provider": "anthropic"})
    altered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    foreign = sealing.TOKEN_PREFIX + seal_bytes(b"{}", COMPACTION)  # another purpose's key
    message = {"type": "message", "role": "user", "content": "hi"}
    assert sealing.open_items([_item(token), message], "gemini") == [message]
    assert (
        sealing.open_items([_item(altered), _item(foreign), _item(sealing.TOKEN_PREFIX + "x")], "anthropic")
        == []
    )
    unsealed = _item("raw-openai-blob")
    assert sealing.open_items([unsealed], "anthropic") == [unsealed], "not ours to judge: left as it was"


def test_carrier_restores_other_items_meta_and_disappears(settings):
    token = sealing.seal(
        "gemini", "gemini", None, {"provider": "gemini"}, items={"call:c1": {"thought_signature": "ts-1"}}
    )
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert sealing.open_items([call, _item(token)], "gemini") == [
        {**call, "_meta": {"thought_signature": "ts-1", "provider": "gemini"}}
    ]
    assert sealing.open_items([call, _item(token)], "anthropic") == [call]
