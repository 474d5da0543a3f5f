"""Writes for durable loops: a loop's checkpoints, the takeover of a lost loop, and its claim.

A takeover increments ``Response.takeovers``; that number fences every later write of a loop:
a checkpoint written by a loop whose takeover number is no longer the row's is refused, so a
worker that was merely late (not lost) learns that it was replaced and stops without a trace.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.db.models import F

from responses_app.models import Response, ResponseEvent
from responses_app.selectors import response_context_items
from responses_app.states import ResponseStatus


def response_checkpoint(*, response_id: str, takeovers: int, checkpoint: dict[str, Any]) -> bool:
    """Store the loop's last durable step; False when another worker has taken the loop over."""
    return bool(
        Response.objects.filter(id=response_id, takeovers=takeovers).update(
            checkpoint=checkpoint, heartbeat_at=time.time()
        )
    )


def response_take_over(*, response_id: str, stale_before: float, max_takeovers: int) -> int | None:
    """Hand an orphan (in progress, no heartbeat since ``stale_before``) to a new loop.

    Returns the new takeover number, or None when the response is not (or no longer) an orphan
    or has been taken over ``max_takeovers`` times already (the caller fails it then). The row's
    heartbeat is renewed, so other reapers leave it to the loop that is about to resume it.
    """
    with transaction.atomic():
        response = (
            Response.objects.select_for_update(skip_locked=True)
            .filter(id=response_id, status=ResponseStatus.IN_PROGRESS, heartbeat_at__lt=stale_before)
            .only("id", "takeovers")
            .first()
        )
        if response is None or response.takeovers >= max_takeovers:
            return None
        Response.objects.filter(id=response_id).update(takeovers=F("takeovers") + 1, heartbeat_at=time.time())
    return response.takeovers + 1


def response_claim_resume(
    *, response_id: str, takeover: int
) -> tuple[Response, list[dict[str, Any]], list[tuple[int, str, str]]] | None:
    """Claim a taken-over response for this loop: (response, model context, stored events).

    Exactly one loop claims each takeover (``attempts`` moves past ``takeover`` once); None for
    a stale or repeated claim, or a response that ended.
    """
    claimed = Response.objects.filter(
        id=response_id, status=ResponseStatus.IN_PROGRESS, takeovers=takeover, attempts__lte=takeover
    ).update(attempts=takeover + 1, heartbeat_at=time.time())
    if not claimed:
        return None
    response = Response.objects.get(id=response_id)
    events = list(
        ResponseEvent.objects.filter(response=response)
        .order_by("sequence_number")
        .values_list("sequence_number", "type", "payload")
    )
    return response, response_context_items(response=response), events
