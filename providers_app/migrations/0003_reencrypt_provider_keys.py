"""Re-encrypt stored provider keys from the hand-made ``v1:`` cipher to Fernet (``providers_app.secrets``).

The old format is readable here only, once: the server itself no longer opens it. A row whose
old key cannot be opened (the key it was stored under is gone) is left as it is and reported;
``manage.py check --database default`` lists it (openresponses.E008) until the key is entered again.
"""

import base64
import hashlib
import hmac
import os

from django.conf import settings
from django.db import migrations


def _legacy_master_keys() -> list[bytes]:
    raws = [
        os.environ.get("OPENRESPONSES_ENCRYPTION_KEY") or getattr(settings, "OPENRESPONSES_ENCRYPTION_KEY", ""),
        settings.SECRET_KEY,
        *getattr(settings, "SECRET_KEY_FALLBACKS", []),
    ]
    return [hashlib.sha256(("openresponses-provider-keys:" + raw).encode()).digest() for raw in raws if raw]


def _legacy_decrypt(token: str) -> str | None:
    raw = base64.urlsafe_b64decode(token[3:].encode())
    nonce, tag, cipher = raw[:16], raw[16:32], raw[32:]
    for key in _legacy_master_keys():
        expected = hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            continue
        stream = bytearray()
        counter = 0
        while len(stream) < len(cipher):
            stream += hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
        return bytes(a ^ b for a, b in zip(cipher, stream, strict=False)).decode()
    return None


def reencrypt(apps, schema_editor):
    from providers_app.secrets import encrypt

    Provider = apps.get_model("providers_app", "Provider")
    for row in Provider.objects.filter(api_key_encrypted__startswith="v1:"):
        try:
            clear = _legacy_decrypt(row.api_key_encrypted)
        except (ValueError, UnicodeDecodeError):
            clear = None
        if clear is None:
            print(f"  provider {row.name!r}: its stored key cannot be opened; enter it again in the admin")
            continue
        row.api_key_encrypted = encrypt(clear)
        row.save(update_fields=["api_key_encrypted"])


class Migration(migrations.Migration):
    dependencies = [("providers_app", "0002_routing_rule_fallbacks")]

    operations = [migrations.RunPython(reencrypt, migrations.RunPython.noop)]
