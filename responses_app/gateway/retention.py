"""Retention: finished responses older than their key's (or the global) period are deleted with
their items and events; so are finished ``store: false`` responses after a short window, and, on
request, every response of one key. A conversation's items follow the same periods (they copy
the turns of its responses); a key's conversations go with its responses on request.

Usage rows (:class:`~responses_app.models.UsageRecord`) hold no conversation content and are kept.
Unfinished responses are never purged by age. ``store: false`` responses serve only WebSocket
continuation on the connection that made them, so they are kept at least an hour.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from responses_app.conf import openresponses_settings
from responses_app.models import (
    UNFINISHED,
    Conversation,
    ConversationItem,
    Response,
    ResponseEvent,
    ResponseItem,
)

logger = logging.getLogger(__name__)
DAY = 86400.0
MIN_UNSTORED_SECONDS = 3600.0
BATCH = 500


@dataclass
class PurgeReport:
    responses: int = 0
    items: int = 0
    events: int = 0
    cancelled: int = 0
    conversation_items: int = 0
    conversations: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    def add(self, rule: str, responses: int, items: int, events: int) -> None:
        self.responses += responses
        self.items += items
        self.events += events
        self.by_rule[rule] = self.by_rule.get(rule, 0) + responses


def _days(value: object) -> float | None:
    try:
        days = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return days if days > 0 else None


def global_retention_days() -> float | None:
    return _days(openresponses_settings.RETENTION_DAYS)


def unstored_retention_seconds() -> float:
    try:
        seconds = float(openresponses_settings.UNSTORED_RETENTION_SECONDS)
    except (TypeError, ValueError):
        seconds = MIN_UNSTORED_SECONDS
    return max(MIN_UNSTORED_SECONDS, seconds)


def delete_responses(ids: list[str]) -> tuple[int, int, int]:
    """Delete responses with their items and events, in batches; returns the three counts.

    Later responses that continued a deleted one keep working (their link is cleared), as after
    ``DELETE /v1/responses/{id}``.
    """
    responses = items = events = 0
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        with transaction.atomic():
            events += ResponseEvent.objects.filter(response_id__in=batch).delete()[0]
            items += ResponseItem.objects.filter(response_id__in=batch).delete()[0]
            Response.objects.filter(previous_response_id__in=batch).update(previous_response=None)
            responses += Response.objects.filter(id__in=batch).delete()[1].get(Response._meta.label, 0)
    return responses, items, events


def _finished(qs: object) -> object:
    return qs.exclude(status__in=UNFINISHED)  # type: ignore[attr-defined]


def purge_expired(*, now: float | None = None, dry_run: bool = False) -> PurgeReport:
    """Apply every retention rule once."""
    from responses_app.gateway.keys import retention_by_owner

    now = now or time.time()
    report = PurgeReport()
    own = {owner: days for owner, days in retention_by_owner().items() if _days(days) is not None}

    def run(rule: str, qs: object) -> None:
        ids = list(_finished(qs).values_list("id", flat=True))  # type: ignore[attr-defined]
        if dry_run:
            report.add(rule, len(ids), 0, 0)
        elif ids:
            report.add(rule, *delete_responses(ids))

    def run_conversations(qs: object, cutoff: float) -> None:
        """Items older than ``cutoff``, then the conversations that old with nothing left."""
        items = ConversationItem.objects.filter(conversation__in=qs, created_at__lt=cutoff)
        if dry_run:
            report.conversation_items += items.count()
            return
        report.conversation_items += items.delete()[0]
        empty = qs.filter(items__isnull=True, created_at__lt=cutoff)  # type: ignore[attr-defined]
        report.conversations += empty.delete()[1].get(Conversation._meta.label, 0)

    for owner, days in own.items():
        cutoff = now - float(days) * DAY
        run(f"key {owner}", Response.objects.filter(owner=owner, created_at__lt=cutoff))
        run_conversations(Conversation.objects.filter(owner=owner), cutoff)
    days = global_retention_days()
    if days is not None:
        cutoff = now - days * DAY
        run("global", Response.objects.filter(created_at__lt=cutoff).exclude(owner__in=list(own)))
        run_conversations(Conversation.objects.exclude(owner__in=list(own)), cutoff)
    unstored_before = now - unstored_retention_seconds()
    run(
        "store:false",
        Response.objects.filter(store=False).filter(
            Q(completed_at__lt=unstored_before) | Q(completed_at__isnull=True, created_at__lt=unstored_before)
        ),
    )
    if report.responses:
        logger.info(
            "retention: %s %d response(s) (%s)",
            "would delete" if dry_run else "deleted",
            report.responses,
            report.by_rule,
        )
    return report


def purge_owner(*, owners: list[str], dry_run: bool = False) -> PurgeReport:
    """Delete every response of these owners (one key's data, on request); running ones are cancelled first."""
    from responses_app.services import responses as services

    report = PurgeReport()
    qs = Response.objects.filter(owner__in=owners)
    conversations = Conversation.objects.filter(owner__in=owners)
    if dry_run:
        report.add("owner", qs.count(), 0, 0)
        report.conversations = conversations.count()
        return report
    for response in qs.filter(status__in=UNFINISHED):
        services.response_cancel(response=response)
        report.cancelled += 1
    ids = list(qs.values_list("id", flat=True))
    report.add("owner", *delete_responses(ids))
    report.conversation_items = ConversationItem.objects.filter(conversation__in=conversations).delete()[0]
    report.conversations = conversations.delete()[1].get(Conversation._meta.label, 0)
    logger.info("deleted %d response(s) of %d owner(s) on request", report.responses, len(owners))
    return report
