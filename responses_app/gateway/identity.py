"""Who is calling: the identity an authentication hook returns (scopes storage, routing and limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ClientIdentity:
    """Who is calling. ``owner`` scopes stored responses; ``allowed_models`` limits routing (globs)."""

    owner: str | None
    name: str = ""
    allowed_models: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
