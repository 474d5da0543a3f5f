"""The reaper: responses whose loop died (no heartbeat) are ended as ``failed`` with a clear error.

Their stream gets ``error`` + ``response.failed`` with the next sequence numbers, and the output
items that had been completed (from the event log) are kept.
"""

from __future__ import annotations

import json
import logging
import time

from asgiref.sync import async_to_sync
from django.db import transaction

from .conf import openresponses_settings
from .events.bus import get_bus
from .events.emitter import dumps
from .models import Response, ResponseEvent, ResponseItem
from .resource import build_resource
from .states import ResponseStatus

logger = logging.getLogger(__name__)
QUEUED_TIMEOUT_SECONDS = 600.0
ORPHAN_ERROR = {
    "code": "worker_lost",
    "message": "The process running this response stopped before it finished; the response was ended by the reaper.",
    "type": "server_error",
    "param": None,
    "status": 500,
}


def reap_orphans(*, now: float | None = None) -> int:
    now = now or time.time()
    stale = now - float(openresponses_settings.ORPHAN_AFTER_SECONDS)
    ids = list(
        Response.objects.filter(status=ResponseStatus.IN_PROGRESS, heartbeat_at__lt=stale).values_list("id", flat=True)
    ) + list(Response.objects.filter(status=ResponseStatus.QUEUED, heartbeat_at__lt=now - QUEUED_TIMEOUT_SECONDS).values_list("id", flat=True))
    reaped = 0
    for response_id in ids:
        if fail_orphan(response_id=response_id, stale_before=stale):
            reaped += 1
    return reaped


def fail_orphan(*, response_id: str, stale_before: float) -> bool:
    with transaction.atomic():
        response = Response.objects.select_for_update(skip_locked=True).filter(id=response_id).first()
        if response is None or response.is_finished:
            return False
        if response.status == ResponseStatus.IN_PROGRESS and (response.heartbeat_at or 0) >= stale_before:
            return False
        events = list(ResponseEvent.objects.filter(response=response).order_by("sequence_number").values_list("sequence_number", "type", "payload"))
        output = []
        for _, event_type, payload in events:
            if event_type == "response.output_item.done":
                output.append(json.loads(payload)["item"])
        response.fail()
        response.error = ORPHAN_ERROR
        response.completed_at = time.time()
        response.save()
        ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.OUTPUT).delete()
        ResponseItem.objects.bulk_create(
            [ResponseItem(response=response, kind="output", position=i, item_id=item.get("id", ""), item_type=item.get("type", ""), data=item) for i, item in enumerate(output)]
        )
        seq = events[-1][0] + 1 if events else 0
        error_event = {"type": "error", "sequence_number": seq, "error": {"type": "server_error", "code": ORPHAN_ERROR["code"], "message": ORPHAN_ERROR["message"], "param": None}}
        failed_event = {"type": "response.failed", "sequence_number": seq + 1, "response": build_resource(response, output)}
        batch = [(seq, "error", dumps(error_event)), (seq + 1, "response.failed", dumps(failed_event))]
        now = time.time()
        ResponseEvent.objects.bulk_create([ResponseEvent(response=response, sequence_number=s, type=t, payload=p, created_at=now) for s, t, p in batch])
    logger.warning("reaped orphaned response %s", response_id)
    try:
        async_to_sync(get_bus().publish)(response_id, batch)
    except Exception:  # noqa: BLE001 - readers catch up from the store
        logger.warning("could not publish the reaper's events for %s", response_id)
    return True
