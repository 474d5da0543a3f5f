"""Provider keys at rest: encrypted with a key from the environment, or read from a named variable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _secrets
from typing import Any


def _master_key() -> bytes:
    from django.conf import settings

    raw = (
        os.environ.get("OPENRESPONSES_ENCRYPTION_KEY")
        or getattr(settings, "OPENRESPONSES_ENCRYPTION_KEY", "")
        or settings.SECRET_KEY
    )
    return hashlib.sha256(("openresponses-provider-keys:" + raw).encode()).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:length])


def encrypt(plaintext: str) -> str:
    """Authenticated encryption (HMAC-SHA256 stream + tag) of a provider key."""
    key = _master_key()
    nonce = _secrets.token_bytes(16)
    data = plaintext.encode()
    cipher = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data)), strict=True))
    tag = hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()[:16]
    return "v1:" + base64.urlsafe_b64encode(nonce + tag + cipher).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    if not token.startswith("v1:"):
        raise ValueError("Unknown key format")
    raw = base64.urlsafe_b64decode(token[3:].encode())
    nonce, tag, cipher = raw[:16], raw[16:32], raw[32:]
    key = _master_key()
    if not hmac.compare_digest(tag, hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()[:16]):
        raise ValueError("Provider key cannot be decrypted with the configured encryption key")
    return bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher)), strict=True)).decode()


def provider_key(row: Any) -> str:
    """The clear key of a stored provider (from its environment variable or decrypted)."""
    if row.api_key_env:
        return os.environ.get(row.api_key_env, "")
    try:
        return decrypt(row.api_key_encrypted)
    except ValueError:
        return ""
