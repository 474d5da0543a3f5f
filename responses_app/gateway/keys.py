"""Client API keys kept in the database or declared in the config file; the lookup the API calls.

Keys in the config file (``{"keys": [{"name": "team-a", "key_env": "TEAM_A_KEY", "models": [...],
"rpm": 60, "tpm": 200000, "max_concurrent": 4, "retention_days": 30}]}``) take their secret from
the environment variable ``key_env``; their responses belong to ``cfg:<name>``.

``identity_for_key`` runs on every authenticated request, so lookups are cached in-process for
a few seconds (unknown prefixes too), and ``last_used_at`` is written at most once a minute per
key. A key revoked in this process stops working at once; in other processes within
``CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils import timezone

from responses_app.gateway.identity import ClientIdentity

logger = logging.getLogger(__name__)
TOKEN_PREFIX = "ork_"
PREFIX_LENGTH = 8
CACHE_SECONDS = 5.0
LAST_USED_EVERY = 60.0
_MAX_CACHED = 10_000
LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent", "retention_days")


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
    prefix, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    return prefix


def reset_cache() -> None:
    """Forget cached lookups (after a key is created, changed or revoked)."""
    with _lock:
        _cache.clear()
        _exists_cache.clear()
        _config_state.clear()


def _load(prefix: str) -> _Entry | None:
    from responses_app.models import ClientKey

    row = (
        ClientKey.objects.filter(prefix=prefix)
        .only(
            "id",
            "prefix",
            "secret_hash",
            "name",
            "allowed_models",
            "revoked_at",
            "rpm",
            "tpm",
            "max_concurrent",
        )
        .first()
    )
    if row is None:
        return None
    identity = ClientIdentity(
        owner=row.owner,
        name=row.name,
        allowed_models=tuple(str(p) for p in row.allowed_models or ()),
        extra={
            "client_key_id": row.id,
            "client_key_prefix": row.prefix,
            "limits": {"rpm": row.rpm, "tpm": row.tpm, "max_concurrent": row.max_concurrent},
        },
    )
    return _Entry(
        key_id=row.id, secret_hash=row.secret_hash, identity=identity, revoked=row.revoked_at is not None
    )


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
    from responses_app.models import ClientKey

    now = time.monotonic()
    last = _last_used_written.get(key_id)
    if last is not None and now - last < LAST_USED_EVERY:
        return
    _last_used_written[key_id] = now
    ClientKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def identity_for_key(token: str) -> ClientIdentity | None:
    """The identity of a valid, unrevoked stored key or of a config-file key; None for anything else."""
    prefix = split_token(token)
    if prefix is None:
        return _config_identity(token)
    entry = _entry(prefix)
    if entry is None or not hmac.compare_digest(entry.secret_hash.encode(), hash_token(token).encode()):
        return None
    if entry.revoked:
        return None
    _touch(entry.key_id)
    return entry.identity


def stored_keys_exist() -> bool:
    """True once any client key was created (revoked ones count: revoking never reopens the API)."""
    from responses_app.models import ClientKey

    try:
        if config_keys():
            return True  # keys declared in the config file close the API too
    except ConfigUnavailable:
        return True  # fail closed: an unusable config file might declare keys
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


def key_create(
    *, name: str, allowed_models: list[str] | None = None, **limits: int | None
) -> tuple[Any, str]:
    """Create a key; returns the row and the clear token, which is never stored or shown again.

    ``limits``: ``rpm``, ``tpm``, ``max_concurrent``, ``retention_days`` (None: no own limit).
    """
    from responses_app.models import ClientKey

    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown key settings: {sorted(unknown)}")
    while True:
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        if not ClientKey.objects.filter(prefix=prefix).exists():
            break
    token = _new_token(prefix)
    row = ClientKey.objects.create(
        name=name,
        prefix=prefix,
        secret_hash=hash_token(token),
        allowed_models=list(allowed_models or []),
        **limits,
    )
    reset_cache()
    return row, token


def _new_token(prefix: str) -> str:
    return f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def key_update(*, key: Any, **changes: Any) -> Any:
    """Save a key's name, allowed models or limits (``changes``, or fields already set on ``key``)."""
    unknown = set(changes) - {"name", "allowed_models", *LIMIT_FIELDS}
    if unknown:
        raise TypeError(f"unknown key settings: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(key, name, value)
    key.save()
    reset_cache()
    return key


def key_rotate(*, key: Any) -> tuple[Any, str]:
    """A new secret for ``key`` (same prefix, owner, limits and usage); the old token stops working.

    Returns the row and the clear token, which is never stored or shown again. A revoked key
    stays revoked.
    """
    token = _new_token(key.prefix)
    key.secret_hash = hash_token(token)
    key.save(update_fields=["secret_hash"])
    reset_cache()
    return key, token


def key_delete(*, key: Any) -> None:
    """Delete a key; it stops working at once in this process (its responses and usage stay)."""
    key.delete()
    reset_cache()


def key_revoke(*, key: Any) -> Any:
    """Revoke a key (idempotent); it stops working at once in this process."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    reset_cache()
    return key


# ---- keys declared in the config file


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """A client key from the config file. ``secret_set`` says whether its variable holds a secret."""

    name: str
    key_env: str
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    retention_days: int | None
    secret_set: bool

    @property
    def owner(self) -> str:
        return f"cfg:{self.name}"


_config_state: dict[str, Any] = {}
CONFIG_RECHECK_SECONDS = 2.0
#: The last configuration read successfully, by path. Kept across :func:`reset_cache`: a file that
#: turns unreadable (invalid, deleted, half-written) never means "no keys" (issue 16, finding 1).
_last_good: dict[str, dict[str, Any]] = {}
_reported: dict[str, str] = {}


class ConfigUnavailable(Exception):
    """The config file is set but unreadable and no good version of it was ever read here."""


def _read_config(path: str, state: dict[str, Any]) -> tuple[dict[str, Any] | None, int | None, str]:
    """(data, mtime, error): the file's data, or None with the reason it cannot be used."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        return None, None, f"cannot be read: {exc.strerror or exc}"
    if state.get("path") == path and state.get("mtime") == mtime and not state.get("error"):
        return state["data"], mtime, ""
    from providers_app.registry import load_config_file

    try:
        return load_config_file(path), mtime, ""
    except Exception as exc:  # noqa: BLE001 - invalid JSON/YAML, a vanished file, a bad shape: all unusable
        return None, mtime, str(exc) or type(exc).__name__


def _report_config_error(path: str, error: str, *, fallback: bool) -> None:
    """Say loudly (once per distinct error) that the file is unusable, and count it."""
    if _reported.get(path) == error:
        return
    _reported[path] = error
    if fallback:
        logger.error(
            "config file %s is unusable (%s): still serving its last good version (client keys, "
            "limits, prices) until it is fixed",
            path,
            error,
        )
    else:
        logger.error(
            "config file %s is unusable (%s) and was never read successfully: API requests are "
            "refused with 503 until it is fixed",
            path,
            error,
        )
    from responses_app.gateway.metrics import record_config_error

    record_config_error()


def config_file_error() -> tuple[str, bool] | None:
    """Why the config file is unusable right now and whether its last good version is served; None when fine."""
    config_file_data_or_none()
    error = _config_state.get("error")
    if not error:
        return None
    return error, _config_state.get("data") is not None


def config_file_data_or_none() -> dict[str, Any] | None:
    """The parsed config file ({} without one); its last good version when it turns unusable; None
    when it is set, unusable and was never read successfully in this process."""
    from responses_app.conf import openresponses_settings

    path = str(openresponses_settings.CONFIG_FILE or "")
    now = time.monotonic()
    state = _config_state
    if state.get("path") == path and state.get("checked", 0) > now - CONFIG_RECHECK_SECONDS:
        return state["data"]
    data: dict[str, Any] | None = {}
    mtime = None
    error = ""
    if path:
        data, mtime, error = _read_config(path, state)
        if error:
            data = _last_good.get(path)
            _report_config_error(path, error, fallback=data is not None)
        else:
            if path in _reported:
                logger.warning("config file %s is readable again", path)
                _reported.pop(path, None)
            _last_good[path] = data or {}
    same = state.get("path") == path and state.get("data") is data
    with _lock:
        keys = state.get("keys") if same else None
        _config_state.clear()
        _config_state.update(path=path, mtime=mtime, checked=now, data=data, keys=keys, error=error)
    return data


def config_file_data() -> dict[str, Any]:
    """The parsed config file, or its last good version; raises :class:`ConfigUnavailable` when it
    is set but unusable and no good version was ever read (fail closed, never "no keys")."""
    data = config_file_data_or_none()
    if data is None:
        raise ConfigUnavailable(_config_state.get("error") or "unusable")
    return data


def _optional_int(entry: dict[str, Any], name: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"config file key {entry.get('name')!r}: {name!r} must be an integer") from None


def config_keys() -> list[ConfigKey]:
    """The keys declared in the config file (with or without their secret in the environment)."""
    data = config_file_data()
    cached = _config_state.get("keys")
    if cached is not None:
        return cached[0]
    found: list[ConfigKey] = []
    secrets_by_hash: dict[str, ConfigKey] = {}
    for entry in data.get("keys") or []:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("key_env"):
            logger.warning(
                "config file: every key needs a 'name' and a 'key_env'; skipped %r",
                entry.get("name") if isinstance(entry, dict) else entry,
            )
            continue
        secret = os.environ.get(str(entry["key_env"]), "")
        try:
            key = ConfigKey(
                name=str(entry["name"]),
                key_env=str(entry["key_env"]),
                models=tuple(str(m) for m in entry.get("models") or ()),
                rpm=_optional_int(entry, "rpm"),
                tpm=_optional_int(entry, "tpm"),
                max_concurrent=_optional_int(entry, "max_concurrent"),
                retention_days=_optional_int(entry, "retention_days"),
                secret_set=bool(secret),
            )
        except ValueError as exc:
            logger.warning("%s; the key is skipped", exc)
            continue
        found.append(key)
        if secret:
            secrets_by_hash[hash_token(secret)] = key
    _config_state["keys"] = (found, secrets_by_hash)
    return found


def _config_identity(token: str) -> ClientIdentity | None:
    if not config_keys():
        return None
    key = _config_state["keys"][1].get(hash_token(token))
    if key is None:
        return None
    return ClientIdentity(
        owner=key.owner,
        name=key.name,
        allowed_models=key.models,
        extra={
            "config_key": key.name,
            "limits": {"rpm": key.rpm, "tpm": key.tpm, "max_concurrent": key.max_concurrent},
        },
    )


# ---- who an owner is (usage pages, purge --key)


def owner_label(owner: str) -> str:
    """A readable name for a response owner: the key's name, 'anonymous', or the owner itself."""
    from responses_app.models import ClientKey

    if not owner:
        return "anonymous"
    if owner.startswith("cfg:"):
        return owner[4:]
    if owner.startswith("key:") and len(owner) == 4 + PREFIX_LENGTH:
        name = ClientKey.objects.filter(prefix=owner[4:]).values_list("name", flat=True).first()
        if name is not None:
            return name
    if owner.startswith("key:"):
        return "static key " + owner[4:10]
    return owner


def owners_named(name: str) -> list[str]:
    """Every owner a key name stands for (database keys of that name, the config-file key)."""
    from responses_app.models import ClientKey

    owners = [row.owner for row in ClientKey.objects.filter(name=name).only("prefix")]
    if any(key.name == name for key in config_keys()):
        owners.append(f"cfg:{name}")
    return owners


def retention_by_owner() -> dict[str, int]:
    """Owners whose key sets its own retention period (days)."""
    from responses_app.models import ClientKey

    found = {
        row.owner: row.retention_days
        for row in ClientKey.objects.filter(retention_days__isnull=False).only("prefix", "retention_days")
    }
    for key in config_keys():
        if key.retention_days is not None:
            found[key.owner] = key.retention_days
    return found


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "OPENRESPONSES":
        reset_cache()
