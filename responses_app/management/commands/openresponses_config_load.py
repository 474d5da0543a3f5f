"""``manage.py openresponses_config_load [FILE]``: the config file's providers and routes into the database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Load the providers and routes of a config file (default: OPENRESPONSES['CONFIG_FILE']) into the "
        "database, where the admin can edit them. Providers are matched by name, routes by pattern and "
        "provider; clear API keys are stored encrypted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", nargs="?", help="The JSON (or YAML) config file; default: the configured one."
        )
        parser.add_argument(
            "--replace-routes", action="store_true", help="Delete every stored routing rule first."
        )

    def handle(
        self, *args: Any, path: str | None = None, replace_routes: bool = False, **options: Any
    ) -> None:
        from providers_app.registry import ConfigError, load_config_file, registry
        from responses_app.conf import openresponses_settings
        from responses_app.management.commands._config_io import config_load

        path = path or openresponses_settings.CONFIG_FILE
        if not path:
            raise CommandError(
                "No config file: pass a path or set OPENRESPONSES['CONFIG_FILE'] / OPENRESPONSES_CONFIG."
            )
        try:
            counts = config_load(load_config_file(str(path)), replace_routes=replace_routes)
        except (OSError, ConfigError) as exc:
            raise CommandError(str(exc)) from exc
        registry.reset()
        self.stdout.write(
            f"Loaded {path}: providers {counts['providers_created']} created, {counts['providers_updated']} updated; "
            f"routes {counts['routes_created']} created, {counts['routes_updated']} updated, {counts['routes_deleted']} deleted."
        )
