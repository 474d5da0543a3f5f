"""``manage.py openresponses_config_dump``: providers and routes from the database and the config file, as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Print the stored (database) and declared (config file) providers and routes as JSON. "
        'API keys are never printed: a stored key shows as "api_key_stored": true.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source",
            choices=["all", "database", "file"],
            default="all",
            help="'database' or 'file' prints that part alone, in the config file format (loadable again).",
        )

    def handle(self, *args: Any, source: str = "all", **options: Any) -> None:
        from django.db import DatabaseError

        from providers_app.registry import ConfigError
        from responses_app.conf import openresponses_settings
        from responses_app.management.commands._config_io import database_config, file_config

        out: dict[str, Any] = {}
        if source in {"all", "database"}:
            try:
                out["database"] = database_config()
            except DatabaseError as exc:
                raise CommandError(f"The database cannot be read (did you run migrate?): {exc}") from exc
        if source in {"all", "file"}:
            path = openresponses_settings.CONFIG_FILE
            try:
                out["config_file"] = {"path": str(path), **file_config(str(path))} if path else None
            except (OSError, ConfigError) as exc:
                raise CommandError(str(exc)) from exc
        if source != "all":  # one section alone is a loadable config file
            out = next(iter(out.values())) or {}
            out.pop("path", None)
        self.stdout.write(json.dumps(out, indent=2))
