"""``manage.py openresponses_purge``: apply the retention rules, or delete one key's data."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Delete finished responses (with their items and events) older than their key's retention_days or "
        "OPENRESPONSES['RETENTION_DAYS'], and finished store:false responses after UNSTORED_RETENTION_SECONDS. "
        "With --key NAME, delete every response of that client key instead (running ones are cancelled first)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--key",
            metavar="NAME",
            help="Delete all responses of the client key of this name (admin or config file).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args: Any, key: str | None = None, dry_run: bool = False, **options: Any) -> None:
        from responses_app.gateway import limits
        from responses_app.gateway.keys import owners_named
        from responses_app.gateway.retention import purge_expired, purge_owner

        verb = "Would delete" if dry_run else "Deleted"
        if key:
            owners = owners_named(key)
            if not owners:
                raise CommandError(f"No client key named {key!r} (in the admin or the config file).")
            report = purge_owner(owners=owners, dry_run=dry_run)
            extra = f"; cancelled {report.cancelled} running first" if report.cancelled else ""
            if report.conversations:
                extra += f"; {report.conversations} conversation(s)"
            self.stdout.write(
                f"{verb} {report.responses} response(s) of key {key!r} ({report.items} items, {report.events} events){extra}."
            )
            return
        report = purge_expired(dry_run=dry_run)
        rules = (
            ", ".join(f"{rule}: {count}" for rule, count in report.by_rule.items() if count)
            or "nothing expired"
        )
        self.stdout.write(
            f"{verb} {report.responses} expired response(s) ({report.items} items, {report.events} events) — {rules}."
        )
        if report.conversation_items or report.conversations:
            self.stdout.write(
                f"{verb} {report.conversation_items} expired conversation item(s) "
                f"and {report.conversations} emptied conversation(s)."
            )
        if not dry_run:
            reclaimed = limits.reclaim_all()
            if reclaimed:
                self.stdout.write(f"Reclaimed {reclaimed} stale concurrency slot(s).")
