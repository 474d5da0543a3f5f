"""The host's hosted tool: the loop calls it itself when a request names it."""

from __future__ import annotations


def order_status(order_id: str) -> dict:
    """The shipping status of an order in the host's shop."""
    return {"order_id": order_id, "status": "shipped"}
