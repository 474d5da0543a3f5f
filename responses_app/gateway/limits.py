"""Per-key limits: requests per minute, tokens per minute, concurrent responses; and a global cap.

One admission step per request (:func:`admit`) checks every limit and takes a concurrency slot
atomically (one Lua script in Redis, one lock in-process), so concurrent first requests cannot
slip past a limit. At the response's terminal state :func:`settle` frees the slot and charges the
tokens it really used (streamed or not) to the key's token window.

Windows are sliding logs over the last 60 seconds: an over-limit request gets 429 with
``Retry-After`` set to when the window frees up. Tokens are known only at the end, so requests
already running when a key crosses its token limit finish; the next ones are refused.

State lives in Redis when :func:`~responses_app.gateway.shared_state.redis_url` is set (every process and
machine shares it), else in this process. A slot whose response ended without :func:`settle`
(a worker that died, reaped later) is reclaimed when the key reaches its limit: slots of responses
that are no longer unfinished in the database are dropped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError
from responses_app.gateway.shared_state import async_redis, key_prefix, sync_redis

logger = logging.getLogger(__name__)
WINDOW = 60.0
SLOT_GRACE = 30.0  # a slot younger than this may belong to a response not stored yet
SLOT_MAX_AGE = 86400.0
GLOBAL = "*global*"
#: Slots of replays (``GET …?stream=true``) are named ``replay:<request id>``: no response row
#: tells whether one still streams, so they are reclaimed only when released or after an hour.
REPLAY_PREFIX = "replay:"
REPLAY_SLOT_MAX_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def limits_for(identity: Any) -> Limits:
    """The caller's limits: its key's own, else ``OPENRESPONSES["DEFAULT_LIMITS"]`` field by field."""
    own = (getattr(identity, "extra", None) or {}).get("limits") or {}
    default = openresponses_settings.DEFAULT_LIMITS or {}
    values = {
        name: own.get(name) if own.get(name) is not None else default.get(name)
        for name in ("rpm", "tpm", "max_concurrent")
    }
    return Limits(**{name: _positive(value) for name, value in values.items()})


def global_max() -> int | None:
    return _positive(openresponses_settings.MAX_CONCURRENT_RESPONSES)


def subject(owner: str | None) -> str:
    """Whose budget a request spends: the response owner (``anonymous`` without authentication)."""
    return owner or "anonymous"


def _too_many(message: str, retry_after: float, code: str) -> ApiError:
    return ApiError(
        429,
        message,
        code=code,
        error_type="too_many_requests",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def _rejection(kind: int, retry_after: float, limits: Limits) -> ApiError:
    if kind == 1:
        return _too_many(
            f"Rate limit reached: {limits.rpm} requests per minute for this API key.",
            retry_after,
            "rate_limit_exceeded",
        )
    if kind == 2:
        return _too_many(
            f"Token limit reached: {limits.tpm} tokens per minute for this API key.",
            retry_after,
            "token_limit_exceeded",
        )
    if kind == 3:
        return _too_many(
            f"Too many concurrent responses: at most {limits.max_concurrent} at once for this API key.",
            retry_after,
            "concurrency_limit_exceeded",
        )
    return _too_many(
        "The server is at its maximum of concurrent responses; retry shortly.", retry_after, "server_busy"
    )


# --------------------------------------------------------------------------- Redis

_ADMIT = """
local now = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local conc = tonumber(ARGV[4])
local glob = tonumber(ARGV[5])
local member = ARGV[6]
local window = tonumber(ARGV[7])
local max_age = tonumber(ARGV[8])
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tostring(tonumber(oldest[2]) + window - now)}
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
  if used >= tpm then
    for i = 1, #entries, 2 do
      used = used - tonumber(string.match(entries[i], ':(%d+)$'))
      if used < tpm then return {2, tostring(tonumber(entries[i + 1]) + window - now)} end
    end
    return {2, '1'}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - max_age)
if conc > 0 and redis.call('ZCARD', KEYS[3]) >= conc then return {3, '1'} end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - max_age)
if glob > 0 and redis.call('ZCARD', KEYS[4]) >= glob then return {4, '1'} end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
end
redis.call('ZADD', KEYS[3], now, member)
redis.call('EXPIRE', KEYS[3], max_age)
redis.call('ZADD', KEYS[4], now, member)
redis.call('EXPIRE', KEYS[4], max_age)
return {0, '0'}
"""

_SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
local tokens = tonumber(ARGV[3])
if tokens > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[4]))
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 1)
end
return 1
"""


def _keys(who: str) -> list[str]:
    base = f"{key_prefix()}:limits"
    return [f"{base}:{who}:rpm", f"{base}:{who}:tpm", f"{base}:{who}:slots", f"{base}:{GLOBAL}:slots"]


# --------------------------------------------------------------------------- in-process


class LocalLimiter:
    """The same algorithm as the Lua scripts, for one process (the embedded default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self.slots: dict[str, dict[str, float]] = defaultdict(dict)

    def admit(self, who: str, member: str, limits: Limits, glob: int | None, now: float) -> tuple[int, float]:
        with self._lock:
            requests = self._requests[who]
            if limits.rpm:
                while requests and requests[0] <= now - WINDOW:
                    requests.popleft()
                if len(requests) >= limits.rpm:
                    return 1, requests[0] + WINDOW - now
            if limits.tpm:
                tokens = self._tokens[who]
                while tokens and tokens[0][0] <= now - WINDOW:
                    tokens.popleft()
                used = sum(n for _, n in tokens)
                if used >= limits.tpm:
                    for at, n in tokens:
                        used -= n
                        if used < limits.tpm:
                            return 2, at + WINDOW - now
                    return 2, 1.0
            own, everyone = self.slots[who], self.slots[GLOBAL]
            if limits.max_concurrent and len(own) >= limits.max_concurrent:
                return 3, 1.0
            if glob and len(everyone) >= glob:
                return 4, 1.0
            if limits.rpm:
                requests.append(now)
            own[member] = everyone[member] = now
            return 0, 0.0

    def settle(self, who: str, member: str, tokens: int, now: float) -> None:
        with self._lock:
            self.slots[who].pop(member, None)
            self.slots[GLOBAL].pop(member, None)
            if tokens > 0:
                window = self._tokens[who]
                while window and window[0][0] <= now - WINDOW:
                    window.popleft()
                window.append((now, tokens))

    def members(self, who: str) -> dict[str, float]:
        with self._lock:
            return dict(self.slots[who])

    def drop(self, who: str, members: list[str]) -> None:
        with self._lock:
            for member in members:
                self.slots[who].pop(member, None)
                self.slots[GLOBAL].pop(member, None)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._tokens.clear()
            self.slots.clear()


local_limiter = LocalLimiter()


# --------------------------------------------------------------------------- the API


def _stale_slots(members: dict[str, float], now: float) -> list[str]:
    """Slots whose response is no longer unfinished (or never got stored): safe to reclaim."""
    from responses_app.models import UNFINISHED, Response

    old = [
        member
        for member, at in members.items()
        if at < now - (REPLAY_SLOT_MAX_AGE if member.startswith(REPLAY_PREFIX) else SLOT_GRACE)
    ]
    if not old:
        return []
    alive = set(
        Response.objects.filter(request_id__in=old, status__in=UNFINISHED).values_list(
            "request_id", flat=True
        )
    )
    return [member for member in old if member not in alive]


async def admit(*, owner: str | None, limits: Limits, ticket: str) -> None:
    """Count this request and take a concurrency slot named ``ticket``, or raise 429.

    The caller passes ``ticket`` (its request id, stored on the response) to :func:`release` if
    it ends up creating no response, else :func:`settle` runs at the response's terminal state.
    """
    from asgiref.sync import sync_to_async

    who, glob = subject(owner), global_max()
    if not (limits.rpm or limits.tpm or limits.max_concurrent or glob):
        return  # nothing to enforce: no round trip (slots are only counted while a cap exists)
    for attempt in range(2):
        now = time.time()
        client = async_redis()
        try:
            if client is None:
                kind, retry = local_limiter.admit(who, ticket, limits, glob, now)
            else:
                args = [
                    now,
                    limits.rpm or 0,
                    limits.tpm or 0,
                    limits.max_concurrent or 0,
                    glob or 0,
                    ticket,
                    WINDOW,
                    SLOT_MAX_AGE,
                ]
                kind, retry = await client.eval(_ADMIT, 4, *_keys(who), *args)
                kind, retry = int(kind), float(retry)
        except Exception:  # noqa: BLE001 - a limiter outage must not take the API down
            logger.warning("rate limiter unavailable; request admitted without limits", exc_info=True)
            return
        if kind == 0:
            return
        if kind in (3, 4) and attempt == 0:
            reclaimed = await sync_to_async(_reclaim)(GLOBAL if kind == 4 else who, now)
            if reclaimed:
                continue
        error = _rejection(kind, retry, limits)
        await sync_to_async(_count_rejection)(error.code or "rate_limit_exceeded")
        raise error


def _count_rejection(reason: str) -> None:
    from responses_app.gateway.metrics import record_rejection

    record_rejection(reason=reason)


def _members(who: str) -> dict[str, float]:
    client = sync_redis()
    if client is None:
        return local_limiter.members(who)
    rows = client.zrange(_keys(who)[2], 0, -1, withscores=True)
    return {member.decode() if isinstance(member, bytes) else member: score for member, score in rows}


def _reclaim(who: str, now: float) -> int:
    stale = _stale_slots(_members(who), now)
    if stale:
        client = sync_redis()
        if client is None:
            local_limiter.drop(who, stale)
        else:
            keys = _keys(who)
            pipe = client.pipeline(transaction=False)
            pipe.zrem(keys[2], *stale)
            pipe.zrem(keys[3], *stale)
            pipe.execute()
        logger.info("reclaimed %d concurrency slot(s) of responses that ended elsewhere", len(stale))
    return len(stale)


def reclaim_all() -> int:
    """Drop stale slots of every key (the periodic purge task calls this)."""
    client = sync_redis()
    now = time.time()
    if client is None:
        subjects = [who for who in list(local_limiter.slots) if who != GLOBAL]
    else:
        pattern = f"{key_prefix()}:limits:*:slots"
        base = len(f"{key_prefix()}:limits:")
        subjects = [k.decode()[base : -len(":slots")] for k in client.scan_iter(match=pattern, count=500)]
        subjects = [who for who in subjects if who != GLOBAL]
    total = sum(_reclaim(who, now) for who in subjects)
    return total + _reclaim(GLOBAL, now)


def settle(*, owner: str | None, ticket: str, tokens: int) -> None:
    """At a terminal state: free the slot and charge the tokens used (synchronous; never raises)."""
    if not ticket:
        return
    who, now = subject(owner), time.time()
    try:
        client = sync_redis()
        if client is None:
            local_limiter.settle(who, ticket, max(0, int(tokens)), now)
            return
        client.eval(*settle_eval(owner=owner, ticket=ticket, tokens=tokens, now=now))
    except Exception:  # noqa: BLE001 - the slot is reclaimed later; the finish must not fail
        logger.warning("could not settle the limits of request %s", ticket, exc_info=True)


def settle_eval(*, owner: str | None, ticket: str, tokens: int, now: float) -> tuple[Any, ...]:
    """The arguments of the Redis ``EVAL`` that settles ``ticket`` (for a pipeline of several commands)."""
    keys = _keys(subject(owner))
    return (_SETTLE, 3, keys[1], keys[2], keys[3], now, ticket, max(0, int(tokens)), WINDOW)


async def release(*, owner: str | None, ticket: str) -> None:
    """Free a slot taken by :func:`admit` for a request that created no response."""
    from asgiref.sync import sync_to_async

    await sync_to_async(settle)(owner=owner, ticket=ticket, tokens=0)


def active_slots() -> dict[str, int]:
    """Concurrency slots in use per subject (for metrics and the admin)."""
    client = sync_redis()
    if client is None:
        with local_limiter._lock:
            return {who: len(slots) for who, slots in local_limiter.slots.items() if slots}
    found = {}
    base = len(f"{key_prefix()}:limits:")
    for key in client.scan_iter(match=f"{key_prefix()}:limits:*:slots", count=500):
        found[key.decode()[base : -len(":slots")]] = int(client.zcard(key))
    return found
