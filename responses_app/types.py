"""Request types of the core: what a front end hands to the services once it has validated a request.

Front ends (``api/``, ``admin/``) build these; services, the loop and the events never import the
front ends, so they take these plain dataclasses instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CreateRequest:
    """A validated create request: echo parameters, canonical input items and dispatch flags."""

    model: str
    params: dict[str, Any]
    input_items: list[dict[str, Any]]
    previous_response_id: str | None = None
    conversation_id: str | None = None
    stream: bool = False
    background: bool = False
    store: bool = True
    item_references: list[tuple[int, str]] = field(default_factory=list)
    #: The fields the client set (not null), by dotted name (``"reasoning.summary"``), with their
    #: values: what ``services.surface`` checks against the route's providers.
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompactRequest:
    """A validated ``POST /v1/responses/compact`` body."""

    model: str
    input_items: list[dict[str, Any]]
    previous_response_id: str | None = None
    instructions: str | None = None
    item_references: list[tuple[int, str]] = field(default_factory=list)
