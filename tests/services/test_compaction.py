"""Compaction helpers without a server: the context-window estimate."""

from __future__ import annotations

from responses_app.services.compaction import estimate_item_tokens


def test_a_search_counts_its_carried_results_in_the_context_estimate() -> None:
    """Anthropic reads a search's results again on every later turn: they count toward the
    context window the truncation estimates, though the client never sees them."""
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    blocks = [{"type": "web_search_tool_result", "content": [{"encrypted_content": "x" * 4000}]}]
    carried = {**search, "_meta": {"provider": "anthropic", "server_blocks": blocks}}
    assert estimate_item_tokens(carried) >= estimate_item_tokens(search) + 1000
