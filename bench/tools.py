"""The hosted tool of the agentic shape: trivial work, so the figure is the loop's own cost."""

from __future__ import annotations


def bench_lookup(query: str) -> dict:
    """Look something up (answers at once)."""
    return {"query": query, "answer": 42}
