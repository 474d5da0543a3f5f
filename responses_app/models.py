"""Stored responses, their input/output items and their event log; conversations and their items."""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from responses_app.states import ResponseStatus

S = ResponseStatus
UNFINISHED = [S.QUEUED, S.IN_PROGRESS]

# ---- JSON that holds any string, on every backend
#
# PostgreSQL's jsonb (and text) cannot hold the NUL character, yet a tool's output or a model's
# text may carry one (binary-ish shell output). Stored JSON swaps it for a two-character escape
# led by U+FFFF, a noncharacter Unicode sets aside for a program's internal use (itself escaped
# by doubling), the same way on SQLite and PostgreSQL; reading restores every string exactly.
_ESCAPE = "\uffff"
_TO_STORE = {"\x00": _ESCAPE + "0", _ESCAPE: _ESCAPE + _ESCAPE}
_TO_STORE_RE = re.compile("[\x00\uffff]")
_FROM_STORE_RE = re.compile("\uffff([0\uffff])")


def _store_string(value: str) -> str:
    return _TO_STORE_RE.sub(lambda m: _TO_STORE[m.group()], value)


def _restore_string(value: str) -> str:
    return _FROM_STORE_RE.sub(lambda m: "\x00" if m.group(1) == "0" else _ESCAPE, value)


def _walk(value: Any, fix: Any) -> Any:
    """``value`` with ``fix`` applied to every string in it, keys included (iterative callers need
    no more: validation bounds the nesting depth)."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        return {fix(k) if isinstance(k, str) else k: _walk(v, fix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, fix) for v in value]
    return value


class StoredJSONEncoder(json.JSONEncoder):
    """JSON for the database: NUL and U+FFFF escaped (see above). The plain encoding is kept when it
    holds neither (one scan of the text: the usual case costs nothing more)."""

    def encode(self, o: Any) -> str:
        text = super().encode(o)
        if "\\u0000" in text or "\\uffff" in text or _ESCAPE in text:
            return super().encode(_walk(o, _store_string))
        return text


class StoredJSONDecoder(json.JSONDecoder):
    """Reads what :class:`StoredJSONEncoder` wrote, every string restored."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        value = super().decode(s, *args, **kwargs)
        if _ESCAPE in s or "\\uffff" in s:
            return _walk(value, _restore_string)
        return value


def stored_text(value: str) -> str:
    """``value`` for a plain text column (search text): the NUL character dropped."""
    return value.replace("\x00", "") if "\x00" in value else value


def StoredJSONField(**kwargs: Any) -> models.JSONField:  # noqa: N802 - reads as a field class
    """A JSONField whose strings may hold any character (NUL included) on every backend."""
    return models.JSONField(encoder=StoredJSONEncoder, decoder=StoredJSONDecoder, **kwargs)


class Response(ConcurrentTransitionMixin, models.Model):
    """One Open Responses response. Its status only changes through the transition methods."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    # Indexed by (status, heartbeat_at) below: its leading column serves status lookups.
    status = FSMField(default=S.QUEUED, choices=S.choices, protected=True)
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    previous_response = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="next_responses",
        db_index=False,  # Meta.indexes
    )
    ancestor_ids = models.JSONField(
        default=list, blank=True, help_text="Earlier responses of the chain, oldest first."
    )
    conversation = models.ForeignKey(
        "Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="responses",
        db_index=False,  # Meta.indexes
    )
    conversation_position = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="The conversation's items before this position are the response's context.",
    )
    owner = models.CharField(
        max_length=200, blank=True, help_text="Client key (or host user) that created it."
    )
    params = StoredJSONField(default=dict, help_text="The request parameters echoed in the resource.")
    store = models.BooleanField(default=True)
    background = models.BooleanField(default=False)
    stream = models.BooleanField(default=False)
    created_at = models.FloatField(db_index=True)
    started_at = models.FloatField(null=True, blank=True)
    first_token_at = models.FloatField(null=True, blank=True)
    completed_at = models.FloatField(null=True, blank=True)
    heartbeat_at = models.FloatField(null=True, blank=True)
    error = StoredJSONField(null=True, blank=True)
    incomplete_details = models.JSONField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True)
    iterations = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    takeovers = models.PositiveIntegerField(
        default=0, help_text="Times another worker took the loop over after its worker was lost."
    )
    checkpoint = StoredJSONField(
        null=True, blank=True, help_text="The loop's last durable step (see loop/durability.py)."
    )
    idempotency_key = models.CharField(
        max_length=255, blank=True, default="", help_text="The create request's Idempotency-Key header."
    )
    search_text = models.TextField(
        blank=True, help_text="Plain text of the conversation turn, for admin search."
    )
    wire_log = StoredJSONField(
        null=True, blank=True, help_text="Provider requests as sent (secrets removed)."
    )
    request_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The X-Request-Id of the request that created it (for logs).",
    )

    class Meta:
        ordering = ["-created_at"]
        # Indexes in Meta rather than db_index=True on the CharFields: PostgreSQL then gets no second
        # ``varchar_pattern_ops`` index (``_like``) per field, which only LIKE 'prefix%' would use
        # (no query does) and every INSERT and UPDATE of a row would maintain (see migration 0008).
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),  # the reaper; also status lookups
            models.Index(fields=["model"], name="response_model_idx"),
            models.Index(fields=["provider"], name="response_provider_idx"),
            models.Index(fields=["owner"], name="response_owner_idx"),
            models.Index(fields=["request_id"], name="response_request_id_idx"),
            models.Index(fields=["previous_response"], name="response_previous_idx"),
            models.Index(fields=["conversation"], name="response_conversation_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="response_owner_idempotency_key",
            )
        ]

    def __str__(self) -> str:
        return self.id

    # ---- the state machine: transitions change state only; services do the rest.

    @transition(field=status, source=S.QUEUED, target=S.IN_PROGRESS)
    def start(self) -> None:
        """The loop picked the response up."""

    @transition(field=status, source=UNFINISHED, target=S.COMPLETED)
    def complete(self) -> None:
        """The model finished its answer."""

    @transition(field=status, source=UNFINISHED, target=S.INCOMPLETE)
    def mark_incomplete(self) -> None:
        """A limit (tokens, tool calls, iterations) stopped the answer early."""

    @transition(field=status, source=UNFINISHED, target=S.FAILED)
    def fail(self) -> None:
        """An error ended the response."""

    @transition(field=status, source=UNFINISHED, target=S.CANCELLED)
    def cancel(self) -> None:
        """A client or operator cancelled the response."""

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED


class ResponseItem(models.Model):
    """An input or output item of a response, in order. ``data`` is the spec item (+ private ``_meta``)."""

    class Kind(models.TextChoices):
        INPUT = "input", "Input"
        OUTPUT = "output", "Output"

    # Not indexed alone: unique_item_position leads with it.
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="items", db_index=False)
    kind = models.CharField(max_length=6, choices=Kind.choices)
    position = models.PositiveIntegerField()
    item_id = models.CharField(max_length=80)
    item_type = models.CharField(max_length=64)
    data = StoredJSONField()

    class Meta:
        ordering = ["response", "kind", "position"]
        indexes = [models.Index(fields=["item_id"], name="response_item_item_id_idx")]
        constraints = [
            models.UniqueConstraint(fields=["response", "kind", "position"], name="unique_item_position")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.position}: {self.item_type}"


class Conversation(models.Model):
    """A conversation (``conv_…``): items that responses created with it see first and append to."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    owner = models.CharField(
        max_length=200, blank=True, help_text="Client key (or host user) that created it."
    )
    metadata = StoredJSONField(default=dict, blank=True)
    created_at = models.FloatField(db_index=True)
    next_position = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Position of the next item (positions are never reused)."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner"], name="conversation_owner_idx")]

    def __str__(self) -> str:
        return self.id


class ConversationItem(models.Model):
    """An item of a conversation, in order. ``data`` is the spec item (+ private ``_meta``)."""

    # Not indexed alone: unique_conversation_item_position leads with it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    position = models.PositiveBigIntegerField()
    item_id = models.CharField(max_length=80)
    item_type = models.CharField(max_length=64)
    data = StoredJSONField()
    response_id = models.CharField(
        max_length=64, blank=True, help_text="The response whose input or output this item was."
    )
    created_at = models.FloatField()

    class Meta:
        ordering = ["conversation", "position"]
        indexes = [models.Index(fields=["item_id"], name="conversation_item_item_id_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position"], name="unique_conversation_item_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.position}: {self.item_type}"


class ResponseEvent(models.Model):
    """One streamed event exactly as sent (``payload`` is its JSON), for replay, resume and the admin."""

    # Not indexed alone: unique_event_sequence leads with it.
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="events", db_index=False)
    sequence_number = models.PositiveIntegerField()
    type = models.CharField(max_length=80)
    payload = models.TextField()
    created_at = models.FloatField()

    class Meta:
        ordering = ["response", "sequence_number"]
        constraints = [
            models.UniqueConstraint(fields=["response", "sequence_number"], name="unique_event_sequence")
        ]

    def __str__(self) -> str:
        return f"{self.sequence_number} {self.type}"


class ClientKey(models.Model):
    """An API key handed to a client. Only a hash of the secret is stored; the secret is shown once.

    A token reads ``ork_<prefix>_<secret>``; the prefix finds the row, the SHA-256 of the whole
    token (high-entropy, so a fast hash is enough) is compared in constant time.
    """

    name = models.CharField(
        max_length=200, help_text="Who or what uses this key, e.g. 'billing team' or 'ci'."
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Shell-style globs of model names this key may use (e.g. gpt-*); empty: any model.",
    )
    rpm = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="requests per minute", help_text="Empty: no limit."
    )
    tpm = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="tokens per minute", help_text="Empty: no limit."
    )
    max_concurrent = models.PositiveIntegerField(
        null=True,
        blank=True,
        verbose_name="concurrent responses",
        help_text="Unfinished responses at once. Empty: no limit.",
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete this key's responses this many days after creation. Empty: the global setting.",
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "client API key"

    def __str__(self) -> str:
        return f"{self.name} (ork_{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def owner(self) -> str:
        """The owner recorded on responses created with this key."""
        return f"key:{self.prefix}"


class UsageRecord(models.Model):
    """What one finished response used and cost. Holds no conversation content, so it outlives
    the response (retention purges responses, not usage) and feeds the usage pages and metrics."""

    response_id = models.CharField(max_length=64, unique=True)
    owner = models.CharField(max_length=200, blank=True)  # indexed by (owner, day)
    key_name = models.CharField(
        max_length=200, blank=True, help_text="Name of the client key (or 'anonymous')."
    )
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20)
    day = models.DateField(db_index=True, help_text="UTC day the response was created.")
    created_at = models.FloatField(db_index=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(
        max_digits=18, decimal_places=8, default=0, help_text="US dollars, from the price table."
    )
    first_token_seconds = models.FloatField(null=True, blank=True)
    total_seconds = models.FloatField(null=True, blank=True)
    iterations = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "day"]),
            models.Index(fields=["model"], name="usage_model_idx"),
        ]
        # /metrics shows every team's models, volumes and costs: a permission of its own, not "any staff".
        permissions = [("view_metrics", "Can read the Prometheus metrics at /metrics")]

    def __str__(self) -> str:
        return f"{self.response_id} {self.model} {self.input_tokens}+{self.output_tokens}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
