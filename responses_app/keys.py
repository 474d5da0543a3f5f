"""Client API keys kept in the database: create, revoke, and the cheap lookup the API calls.

``identity_for_key`` runs on every authenticated request, so lookups are cached in-process for
a few seconds (unknown prefixes too), and ``last_used_at`` is written at most once a minute per
key. A key revoked in this process stops working at once; in other processes within
``CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from .auth import ClientIdentity

TOKEN_PREFIX = "ork_"
PREFIX_LENGTH = 8
CACHE_SECONDS = 5.0
LAST_USED_EVERY = 60.0
_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    key_id: int
    secret_hash: str
    identity: ClientIdentity
    revoked: bool


_lock = threading.Lock()
_cache: dict[str, tuple[float, _Entry | None]] = {}
_exists_cache: list[tuple[float, bool]] = []
_last_used_written: dict[int, float] = {}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> str | None:
    """The lookup prefix of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    return prefix


def reset_cache() -> None:
    """Forget cached lookups (after a key is created, changed or revoked)."""
    with _lock:
        _cache.clear()
        _exists_cache.clear()


def _load(prefix: str) -> _Entry | None:
    from .models import ClientKey

    row = ClientKey.objects.filter(prefix=prefix).only("id", "prefix", "secret_hash", "name", "allowed_models", "revoked_at").first()
    if row is None:
        return None
    identity = ClientIdentity(
        owner=row.owner,
        name=row.name,
        allowed_models=tuple(str(p) for p in row.allowed_models or ()),
        extra={"client_key_id": row.id, "client_key_prefix": row.prefix},
    )
    return _Entry(key_id=row.id, secret_hash=row.secret_hash, identity=identity, revoked=row.revoked_at is not None)


def _entry(prefix: str) -> _Entry | None:
    now = time.monotonic()
    cached = _cache.get(prefix)
    if cached is not None and cached[0] > now:
        return cached[1]
    entry = _load(prefix)
    with _lock:
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        _cache[prefix] = (now + CACHE_SECONDS, entry)
    return entry


def _touch(key_id: int) -> None:
    """Record use, at most once a minute per key (per process)."""
    from .models import ClientKey

    now = time.monotonic()
    last = _last_used_written.get(key_id)
    if last is not None and now - last < LAST_USED_EVERY:
        return
    _last_used_written[key_id] = now
    ClientKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def identity_for_key(token: str) -> ClientIdentity | None:
    """The identity of a valid, unrevoked stored key; None for anything else."""
    prefix = split_token(token)
    if prefix is None:
        return None
    entry = _entry(prefix)
    if entry is None or not hmac.compare_digest(entry.secret_hash.encode(), hash_token(token).encode()):
        return None
    if entry.revoked:
        return None
    _touch(entry.key_id)
    return entry.identity


def stored_keys_exist() -> bool:
    """True once any client key was created (revoked ones count: revoking never reopens the API)."""
    from .models import ClientKey

    now = time.monotonic()
    if _exists_cache and _exists_cache[0][0] > now:
        return _exists_cache[0][1]
    try:
        exists = ClientKey.objects.exists()
    except DatabaseError:
        return True  # fail closed: never open the API because the store is briefly away
    with _lock:
        _exists_cache[:] = [(now + CACHE_SECONDS, exists)]
    return exists


# ---- writes (the admin and any other front end go through these)


def key_create(*, name: str, allowed_models: list[str] | None = None) -> tuple[Any, str]:
    """Create a key; returns the row and the clear token, which is never stored or shown again."""
    from .models import ClientKey

    while True:
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        if not ClientKey.objects.filter(prefix=prefix).exists():
            break
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ClientKey.objects.create(name=name, prefix=prefix, secret_hash=hash_token(token), allowed_models=list(allowed_models or []))
    reset_cache()
    return row, token


def key_revoke(*, key: Any) -> Any:
    """Revoke a key (idempotent); it stops working at once in this process."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    reset_cache()
    return key
