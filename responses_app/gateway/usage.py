"""What happens once a response reaches its terminal state: usage and cost stored, limits settled,
metrics counted. :func:`response_finished` is called by ``services.response_finish`` and never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from responses_app.gateway import limits, metrics
from responses_app.gateway.pricing import cost_of, tokens_of
from responses_app.gateway.shared_state import async_redis, sync_redis

logger = logging.getLogger(__name__)
_names: dict[str, tuple[float, str]] = {}
_names_lock = threading.Lock()
NAME_CACHE_SECONDS = 60.0


def key_name(owner: str) -> str:
    """The owner's key name, cached for a minute (one lookup per key, not per response)."""
    from responses_app.gateway.keys import owner_label

    now = time.monotonic()
    cached = _names.get(owner)
    if cached is not None and cached[0] > now:
        return cached[1]
    name = owner_label(owner)
    with _names_lock:
        if len(_names) > 10_000:
            _names.clear()
        _names[owner] = (now + NAME_CACHE_SECONDS, name)
    return name


def cached_key_name(owner: str) -> str | None:
    """The owner's key name if :func:`key_name` knows it (no database), else None."""
    cached = _names.get(owner)
    return cached[1] if cached is not None and cached[0] > time.monotonic() else None


def usage_row(*, response: Any, cost: Decimal, tokens: dict[str, int], name: str) -> dict[str, Any]:
    """The usage row of ``response`` as field values (``name``: its owner's key name)."""
    total = None if response.completed_at is None else max(0.0, response.completed_at - response.created_at)
    first = (
        None if response.first_token_at is None else max(0.0, response.first_token_at - response.created_at)
    )
    return {
        "response_id": response.id,
        "owner": response.owner or "",
        "key_name": name[:200],
        "model": response.model,
        "provider": response.provider or "",
        "status": response.status,
        "day": datetime.fromtimestamp(response.created_at, tz=UTC).date(),
        "created_at": response.created_at,
        "input_tokens": tokens["input"],
        "cached_tokens": tokens["cached"],
        "output_tokens": tokens["output"],
        "reasoning_tokens": tokens["reasoning"],
        "cost": cost,
        "first_token_seconds": first,
        "total_seconds": total,
        "iterations": response.iterations or 0,
        "error_code": str((response.error or {}).get("code") or "")[:100],
        "request_id": response.request_id or "",
    }


def usage_record_save(*, response: Any, cost: Decimal, tokens: dict[str, int]) -> None:
    """Store (or overwrite) the usage row of ``response``."""
    from responses_app.models import UsageRecord

    row = UsageRecord(
        **usage_row(response=response, cost=cost, tokens=tokens, name=key_name(response.owner or ""))
    )
    fields = [f.name for f in UsageRecord._meta.concrete_fields if f.name not in {"id", "response_id"}]
    # A savepoint: a caller inside a transaction (the reaper) keeps it usable if this fails.
    with transaction.atomic():
        UsageRecord.objects.bulk_create(
            [row], update_conflicts=True, unique_fields=["response_id"], update_fields=fields
        )


def priced(response: Any) -> tuple[dict[str, int], Decimal]:
    """The tokens and the cost of a finished response (zero cost when pricing fails)."""
    try:
        return tokens_of(response.usage), cost_of(response.model, response.usage)
    except Exception:  # noqa: BLE001
        logger.exception("pricing the usage of %s failed", response.id)
        return tokens_of(None), Decimal(0)


def response_finished(*, response: Any) -> None:
    """Record a response that just reached its terminal state (synchronous; never raises)."""
    tokens, cost = priced(response)
    try:
        usage_record_save(response=response, cost=cost, tokens=tokens)
    except Exception:  # noqa: BLE001 - the response itself is stored; usage is best effort
        logger.exception("storing the usage of %s failed", response.id)
    client = sync_redis()
    pipe = None if client is None else client.pipeline(transaction=False)
    try:
        _settle_and_count(response, tokens, cost, pipe)
        if pipe is not None:
            _log_failures(response, pipe.execute(raise_on_error=False))
    except Exception:  # noqa: BLE001 - the slot is reclaimed later; metrics never break a response
        logger.warning("could not settle the limits and metrics of %s", response.id, exc_info=True)


async def aresponse_settled(*, response: Any, tokens: dict[str, int], cost: Decimal) -> None:
    """Limits settled and metrics counted for a response whose usage row is stored already, from
    the event loop: one pipelined Redis round trip (never raises)."""
    client = async_redis()
    pipe = None if client is None else client.pipeline(transaction=False)
    try:
        _settle_and_count(response, tokens, cost, pipe)
        if pipe is not None:
            _log_failures(response, await pipe.execute(raise_on_error=False))
    except Exception:  # noqa: BLE001 - the slot is reclaimed later; metrics never break a response
        logger.warning("could not settle the limits and metrics of %s", response.id, exc_info=True)


def _settle_and_count(response: Any, tokens: dict[str, int], cost: Decimal, pipe: Any) -> None:
    """Free the response's limiter slot and add it to the metrics: queued on ``pipe`` (Redis, one
    round trip for both), or at once in this process without Redis."""
    owner, ticket, used = response.owner or None, response.request_id, tokens["input"] + tokens["output"]
    if pipe is None:
        limits.settle(owner=owner, ticket=ticket, tokens=used)
    elif ticket:
        pipe.eval(*limits.settle_eval(owner=owner, ticket=ticket, tokens=used, now=time.time()))
    first = None if response.first_token_at is None else response.first_token_at - response.created_at
    total = None if response.completed_at is None else response.completed_at - response.created_at
    metrics.record_response(
        model=response.model,
        provider=response.provider or "",
        status=response.status,
        tokens=tokens,
        cost=float(cost),
        iterations=response.iterations or 0,
        first_token_seconds=first,
        total_seconds=total,
        error=response.error,
        pipeline=pipe,
    )


def _log_failures(response: Any, results: list[Any]) -> None:
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        logger.warning(
            "could not settle the limits (the slot is reclaimed later) or record the metrics of %s: %s",
            response.id,
            failed[0],
        )
