"""Re-encrypt every stored provider key under the first of ``OPENRESPONSES_ENCRYPTION_KEYS``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Re-encrypt stored provider keys under the first configured encryption key, "
        "after which the older keys can be removed from OPENRESPONSES_ENCRYPTION_KEYS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        from providers_app.models import Provider
        from providers_app.registry import registry
        from providers_app.secrets import PROVIDER_KEYS, SecretError, rotate

        failed = []
        done = 0
        for row in Provider.objects.exclude(api_key_encrypted=""):
            try:
                row.api_key_encrypted = rotate(row.api_key_encrypted, PROVIDER_KEYS)
            except SecretError as exc:
                failed.append(f"{row.name}: {exc}")
                continue
            row.save(update_fields=["api_key_encrypted", "updated_at"])
            done += 1
        registry.reset()
        self.stdout.write(f"{done} provider key(s) re-encrypted under the first key.")
        if failed:
            raise CommandError("Some keys could not be opened:\n" + "\n".join(failed))
