"""Secrets at rest and sealed tokens: Fernet (``cryptography``) with one key per purpose, and rotation.

Key material comes from ``OPENRESPONSES_ENCRYPTION_KEYS`` (a setting holding a list, or the
environment variable, comma-separated): the first key encrypts, every key decrypts, so a new key
is put first and the old one kept after it until ``manage.py openresponses_rotate_keys`` has
re-encrypted every stored row. Without it, ``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS`` are used.
Each purpose (provider keys, compaction blobs, MCP headers, reasoning artefacts) gets its own Fernet key derived
with HKDF, so a token made for one purpose never opens as another.
"""

from __future__ import annotations

import base64
import fnmatch
import os
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROVIDER_KEYS = "provider-keys"
COMPACTION = "compaction"
MCP_HEADERS = "mcp-headers"
REASONING = "reasoning"

TOKEN_PREFIX = "f1:"
LEGACY_PREFIX = "v1:"  # the hand-made cipher before 0003; only that migration reads it
_SALT = b"openresponses-secrets"


class SecretError(ValueError):
    """A token that no configured key opens (altered, made elsewhere, or under a removed key)."""


def key_materials() -> tuple[str, ...]:
    """The configured key material, the encrypting key first."""
    from django.conf import settings

    configured: Any = os.environ.get("OPENRESPONSES_ENCRYPTION_KEYS") or getattr(
        settings, "OPENRESPONSES_ENCRYPTION_KEYS", None
    )
    if not configured:
        # The single-key name of earlier versions is still honoured.
        configured = os.environ.get("OPENRESPONSES_ENCRYPTION_KEY") or getattr(
            settings, "OPENRESPONSES_ENCRYPTION_KEY", ""
        )
    if isinstance(configured, str):
        configured = configured.split(",")
    keys = tuple(k.strip() for k in configured or () if k and k.strip())
    if keys:
        return keys
    return (str(settings.SECRET_KEY), *(str(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", [])))


def explicit_keys_configured() -> bool:
    """True when the key material is not simply ``SECRET_KEY``."""
    from django.conf import settings

    return bool(
        os.environ.get("OPENRESPONSES_ENCRYPTION_KEYS")
        or getattr(settings, "OPENRESPONSES_ENCRYPTION_KEYS", None)
        or os.environ.get("OPENRESPONSES_ENCRYPTION_KEY")
        or getattr(settings, "OPENRESPONSES_ENCRYPTION_KEY", "")
    )


def _derive(material: str, purpose: str) -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode())
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(material.encode())))


@lru_cache(maxsize=32)
def _fernet(purpose: str, materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_derive(m, purpose) for m in materials])


def fernet(purpose: str) -> MultiFernet:
    """The purpose's MultiFernet under the configured keys (the first encrypts)."""
    return _fernet(purpose, key_materials())


def seal_bytes(data: bytes, purpose: str) -> str:
    return TOKEN_PREFIX + fernet(purpose).encrypt(data).decode("ascii")


def unseal_bytes(token: str, purpose: str) -> bytes:
    """The data of a sealed token; :class:`SecretError` when no configured key opens it."""
    if token.startswith(LEGACY_PREFIX):
        raise SecretError(
            "This secret is in the format of an earlier version: run `manage.py migrate` "
            "(with the key it was stored under) or enter it again."
        )
    if not token.startswith(TOKEN_PREFIX):
        raise SecretError("Not a secret sealed by this server.")
    try:
        return fernet(purpose).decrypt(token[len(TOKEN_PREFIX) :].encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise SecretError(
            "This secret cannot be decrypted with the configured encryption keys "
            "(OPENRESPONSES_ENCRYPTION_KEYS, else SECRET_KEY and SECRET_KEY_FALLBACKS)."
        ) from None


def rotate(token: str, purpose: str) -> str:
    """``token`` re-encrypted under the first configured key."""
    unseal_bytes(token, purpose)  # the same clear error for a token no key opens
    return TOKEN_PREFIX + fernet(purpose).rotate(token[len(TOKEN_PREFIX) :].encode("ascii")).decode("ascii")


def encrypt(plaintext: str, purpose: str = PROVIDER_KEYS) -> str:
    """Authenticated encryption of ``plaintext`` (a provider key by default)."""
    return seal_bytes(plaintext.encode(), purpose)


def decrypt(token: str, purpose: str = PROVIDER_KEYS) -> str:
    """The clear text of ``token``; an empty token is an empty secret, anything unreadable raises."""
    if not token:
        return ""
    return unseal_bytes(token, purpose).decode()


# ---------------------------------------------------------------- keys from the environment

#: Variables a stored provider may name in ``api_key_env`` unless the operator says otherwise.
DEFAULT_KEY_VARIABLES = ("OPENRESPONSES_PROVIDER_KEY_*",)
#: Never readable through ``api_key_env``, whatever the setting: the server's own secrets.
NEVER_KEY_VARIABLES = (
    "DJANGO_SECRET_KEY*",
    "OPENRESPONSES_ENCRYPTION_KEY*",
    "OPENRESPONSES_API_KEYS",
    "OPENRESPONSES_METRICS_TOKEN",
    "DATABASE_URL",
    "REDIS_URL",
)


def key_variable_patterns() -> tuple[str, ...]:
    """``OPENRESPONSES_PROVIDER_KEY_VARIABLES``: globs of the variables ``api_key_env`` may name."""
    from django.conf import settings

    value: Any = os.environ.get("OPENRESPONSES_PROVIDER_KEY_VARIABLES") or getattr(
        settings, "OPENRESPONSES_PROVIDER_KEY_VARIABLES", None
    )
    if value is None or value == "":
        return DEFAULT_KEY_VARIABLES
    if isinstance(value, str):
        value = value.split(",")
    return tuple(v.strip() for v in value if v and v.strip())


def key_variable_allowed(name: str) -> bool:
    """True when a stored provider may read its key from the environment variable ``name``."""
    if not name or any(fnmatch.fnmatchcase(name.upper(), p) for p in NEVER_KEY_VARIABLES):
        return False
    return any(fnmatch.fnmatchcase(name, p) for p in key_variable_patterns())


def key_variable_error(name: str) -> str:
    return (
        f"The environment variable {name!r} is not one a provider in the database may read its key "
        f"from (allowed: {', '.join(key_variable_patterns()) or 'none'}; "
        "set OPENRESPONSES_PROVIDER_KEY_VARIABLES)."
    )


def provider_key(row: Any) -> str:
    """The clear key of a stored provider (from its environment variable or decrypted).

    Raises :class:`SecretError` when the stored key cannot be decrypted, was entered for another
    adapter or base URL, or the variable is not one the operator allows: a key is never sent
    where it was not meant to go, and a provider never silently runs without its key.
    """
    if row.api_key_env:
        if not key_variable_allowed(row.api_key_env):
            raise SecretError(f"Provider {row.name!r}: {key_variable_error(row.api_key_env)}")
        return os.environ.get(row.api_key_env, "")
    if row.api_key_encrypted and row.api_key_destination != row.key_destination():
        raise SecretError(
            f"The adapter or base URL of provider {row.name!r} changed since its key was entered: "
            "enter the key again."
        )
    try:
        return decrypt(row.api_key_encrypted)
    except SecretError as exc:
        raise SecretError(f"The stored key of provider {row.name!r} cannot be used: {exc}") from None
