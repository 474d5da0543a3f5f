"""Secrets at rest (issue 16, finding 4): Fernet with purpose keys and rotation, a re-encrypting
migration, a clear error on a failed decrypt, and no production start on the development key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps

from providers_app import secrets as provider_secrets
from providers_app.models import Provider
from providers_app.registry import ConfigError, registry
from responses_app.services import compaction

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _keys(settings, monkeypatch):
    monkeypatch.delenv("OPENRESPONSES_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("OPENRESPONSES_ENCRYPTION_KEY", raising=False)
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["key-one-" + "a" * 40]
    compaction._unseal_cached.cache_clear()
    registry.reset()
    yield
    compaction._unseal_cached.cache_clear()
    registry.reset()


def _legacy_encrypt(plaintext: str, raw_key: str) -> str:
    """The hand-made cipher this replaces (to prove the migration reads it once)."""
    key = hashlib.sha256(("openresponses-provider-keys:" + raw_key).encode()).digest()
    nonce = secrets.token_bytes(16)
    data = plaintext.encode()
    stream = b"".join(
        hmac.new(key, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest()
        for i in range(len(data) // 32 + 1)
    )
    cipher = bytes(a ^ b for a, b in zip(data, stream, strict=False))
    tag = hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()[:16]
    return "v1:" + base64.urlsafe_b64encode(nonce + tag + cipher).decode()


def test_tokens_are_fernet_under_a_key_derived_per_purpose():
    token = provider_secrets.encrypt("sk-live-1234")
    assert token.startswith("f1:") and "sk-live" not in token
    body = token[3:].encode()
    # A Fernet token, but not under the raw configured key: each purpose derives its own.
    with pytest.raises(InvalidToken):
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"key-one-" + b"a" * 40).digest())).decrypt(body)
    assert provider_secrets.fernet(provider_secrets.PROVIDER_KEYS).decrypt(body) == b"sk-live-1234"
    with pytest.raises(provider_secrets.SecretError):
        provider_secrets.decrypt(token, provider_secrets.COMPACTION)
    with pytest.raises(ValueError):  # a provider key never opens as a compaction blob
        compaction.unseal(compaction.TOKEN_PREFIX + token)


def test_rotation_first_key_encrypts_every_key_decrypts(settings):
    old = provider_secrets.encrypt("sk-rotate-me")
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["key-two-" + "b" * 40, "key-one-" + "a" * 40]
    assert provider_secrets.decrypt(old) == "sk-rotate-me"
    new = provider_secrets.rotate(old, provider_secrets.PROVIDER_KEYS)
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["key-two-" + "b" * 40]
    assert provider_secrets.decrypt(new) == "sk-rotate-me"
    with pytest.raises(provider_secrets.SecretError, match="cannot be decrypted"):
        provider_secrets.decrypt(old)


@pytest.mark.django_db
def test_rotate_command_reencrypts_rows(settings):
    from django.core.management import call_command

    Provider.objects.create(name="p1", adapter="openai", api_key_encrypted=provider_secrets.encrypt("sk-one"))
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["key-two-" + "b" * 40, "key-one-" + "a" * 40]
    call_command("openresponses_rotate_keys", stdout=open(os.devnull, "w"))  # noqa: SIM115
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["key-two-" + "b" * 40]
    assert provider_secrets.decrypt(Provider.objects.get(name="p1").api_key_encrypted) == "sk-one"


@pytest.mark.django_db
def test_a_key_that_cannot_be_decrypted_is_a_clear_error_never_an_empty_key(settings):
    row = Provider(name="broken", adapter="openai")
    row.set_api_key("sk-lost")
    row.save()
    settings.OPENRESPONSES_ENCRYPTION_KEYS = ["another-key-" + "c" * 40]
    with pytest.raises(provider_secrets.SecretError, match="broken"):
        provider_secrets.provider_key(row)
    registry.reset()
    # The rest of the registry still loads; using this provider fails with the reason.
    assert "broken" in registry.state()[0]
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        registry.adapter("broken")


@pytest.mark.django_db
def test_migration_reencrypts_the_old_format_which_nothing_else_reads(settings):
    settings.SECRET_KEY = "the-secret-key-rows-were-stored-under-0123456789"
    legacy = _legacy_encrypt("sk-legacy-9876", settings.SECRET_KEY)
    kept = Provider.objects.create(name="legacy", adapter="openai", api_key_encrypted=legacy)
    lost = Provider.objects.create(
        name="lost", adapter="openai", api_key_encrypted=_legacy_encrypt("sk-x", "some-other-key")
    )
    with pytest.raises(provider_secrets.SecretError, match="earlier version"):
        provider_secrets.decrypt(legacy)
    migration = importlib.import_module("providers_app.migrations.0003_reencrypt_provider_keys")
    migration.reencrypt(apps, None)
    kept.refresh_from_db()
    lost.refresh_from_db()
    assert kept.api_key_encrypted.startswith("f1:")
    assert provider_secrets.decrypt(kept.api_key_encrypted) == "sk-legacy-9876"
    assert lost.api_key_encrypted.startswith("v1:")  # left for the operator (check E008), not blanked


def test_compaction_blobs_use_their_own_purpose_key():
    token = compaction.seal({"summary": "hello"})
    body = token[len(compaction.TOKEN_PREFIX) :]
    assert body.startswith("f1:")
    with pytest.raises(provider_secrets.SecretError):
        provider_secrets.unseal_bytes(body, provider_secrets.PROVIDER_KEYS)
    assert provider_secrets.unseal_bytes(body, provider_secrets.COMPACTION)


# ------------------------------------------------------------------ production mode


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPENRESPONSES_"))}
    clean.update({"DATABASE_URL": "", "REDIS_URL": "", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DATABASE_URL": "postgres://openresponses@db.internal:5432/openresponses",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


@pytest.mark.e2e  # starts manage.py processes
@pytest.mark.parametrize("which", ["DATABASE_URL", "REDIS_URL"])
def test_production_mode_refuses_the_development_secret_key(which):
    refused = _run(["check"], **{which: PRODUCTION[which]})
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "DJANGO_SECRET_KEY" in refused.stderr
    # DEBUG on (development) or no database/Redis (the embedded default) still start.
    assert _run(["check"], **{which: PRODUCTION[which], "DJANGO_DEBUG": "true"}).returncode == 0
    assert _run(["check"]).returncode == 0


@pytest.mark.e2e  # starts a manage.py process
def test_check_deploy_is_clean_in_the_documented_production_configuration():
    """The configuration of docs/configuration.md, "Production": no warning at all."""
    result = _run(
        ["check", "--deploy", "--fail-level", "WARNING"],
        **PRODUCTION,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="api.example.com",
        DJANGO_SECURE_HTTPS="true",
        DJANGO_SECURE_PROXY_SSL_HEADER="true",
        OPENRESPONSES_ENCRYPTION_KEYS=secrets.token_urlsafe(32),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
