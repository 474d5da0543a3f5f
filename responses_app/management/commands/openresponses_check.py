"""``manage.py openresponses_check``: system checks, the configuration, and a tiny call to every provider."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from typing import Any
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

# A cheap model per adapter family, for providers no route names a concrete model for.
PROBE_MODELS = {
    "openai": "gpt-4o-mini",
    "openai_chat": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "ollama": "llama3.2",
    "mock": "mock-1",
}
PROBE_INPUT = "Reply with the single word OK."


@dataclasses.dataclass
class Probe:
    provider: str
    source: str
    adapter: str
    model: str | None = None
    verdict: str = "skipped"  # ok | FAILED | unavailable | skipped
    detail: str = ""
    failure: bool = False


def _is_local(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    if not base_url or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def probe_model(name: str, config: Any, routes: list[Any], overrides: dict[str, str]) -> str | None:
    """--model NAME=MODEL, the provider's options['check_model'], a route's concrete model, a family default."""
    if name in overrides:
        return overrides[name]
    if config.options.get("check_model"):
        return str(config.options["check_model"])
    for route in routes:
        if route.provider == name and route.upstream_model:
            return route.upstream_model
    for route in routes:
        if route.provider == name and not any(c in route.pattern for c in "*?["):
            return route.pattern
    if config.adapter in PROBE_MODELS:
        return PROBE_MODELS[config.adapter]
    for route in routes:  # a custom adapter: a name its own glob accepts
        if route.provider == name:
            return route.pattern.replace("*", "check").replace("?", "x")
    return None


async def run_probe(probe: Probe, config: Any, timeout: float) -> Probe:
    from providers_app.adapters.base import Finish, ModelRequest, TextDelta, UpstreamError
    from providers_app.registry import ConfigError, adapter_class

    # No retries and a short first-byte wait: a check should answer quickly.
    config = dataclasses.replace(
        config, max_retries=0, first_byte_timeout=min(config.first_byte_timeout, timeout)
    )
    request = ModelRequest(
        model=probe.model or "",
        items=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROBE_INPUT}]}],
        max_output_tokens=16,
    )
    adapter = None
    started = time.perf_counter()
    text = ""
    try:
        adapter = adapter_class(config.adapter)(config)

        async def consume() -> str:
            nonlocal text
            async for chunk in adapter.sample(request, stream=True):
                if isinstance(chunk, TextDelta):
                    text += chunk.text
                if isinstance(chunk, Finish):
                    break
            return text

        await asyncio.wait_for(consume(), timeout)
        probe.verdict, probe.detail = (
            "ok",
            f"{probe.model} answered in {(time.perf_counter() - started) * 1000:.0f} ms: {text.strip()[:40]!r}",
        )
    except TimeoutError:
        probe.verdict, probe.detail = "FAILED", f"{probe.model}: no answer within {timeout:g} s"
    except UpstreamError as exc:
        probe.verdict, probe.detail = "FAILED", f"{probe.model}: HTTP {exc.status} {exc.code}: {exc.message}"
    except ConfigError as exc:
        probe.verdict, probe.detail = "FAILED", str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        probe.verdict, probe.detail = "FAILED", f"{probe.model}: {type(exc).__name__}: {exc}"
    finally:
        if adapter is not None:
            await adapter.aclose()
    if probe.verdict == "FAILED" and probe.source == "default" and not config.api_key:
        probe.verdict = "unavailable"  # a built-in default nobody configured: informative, not a failure
    probe.failure = probe.verdict == "FAILED"
    return probe


class Command(BaseCommand):
    help = (
        "Check the OpenResponses configuration: run the system checks (including the database ones), "
        "show the topology, and reach every configured provider with a tiny request, one line per provider. "
        "Exits non-zero when a check fails or a configured provider cannot be reached."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider", action="append", default=[], help="Only this provider (repeatable)."
        )
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="PROVIDER=MODEL",
            help="The model to try for a provider.",
        )
        parser.add_argument(
            "--timeout", type=float, default=20.0, help="Seconds to wait for each provider (default 20)."
        )
        parser.add_argument(
            "--no-providers", action="store_true", help="Run the checks only; call no provider."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.core.management.base import SystemCheckError

        failed = False
        try:
            self.check(databases=["default"], display_num_errors=True)
        except SystemCheckError as exc:
            self.stderr.write(str(exc))
            failed = True
        self._topology()
        if not options["no_providers"]:
            failed = self._providers(options) or failed
        if failed:
            raise CommandError("OpenResponses check failed (see above).")
        self.stdout.write(self.style.SUCCESS("OpenResponses check passed."))

    def _topology(self) -> None:
        from django.conf import settings
        from django.db import connection

        from responses_app.conf import openresponses_settings

        layer = ((getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}).get(
            "BACKEND", "(none)"
        )
        self.stdout.write("Configuration:")
        rows = [
            ("dispatch", openresponses_settings.DISPATCH),
            ("database", f"{connection.vendor} ({connection.settings_dict.get('NAME')})"),
            ("channel layer", layer),
            ("config file", openresponses_settings.CONFIG_FILE or "(none)"),
            ("hosted tools", len(openresponses_settings.HOSTED_TOOLS or [])),
            ("loop middleware", len(openresponses_settings.MIDDLEWARE or [])),
            ("client keys", "configured" if openresponses_settings.API_KEYS else "(none in settings)"),
        ]
        for label, value in rows:
            self.stdout.write(f"  {label:<16} {value}")

    def _providers(self, options: dict[str, Any]) -> bool:
        from providers_app.registry import ConfigError, all_routes, provider_configs, provider_sources

        try:
            configs, sources, routes = provider_configs(), provider_sources(), all_routes()
        except ConfigError as exc:
            self.stderr.write(f"Providers cannot be loaded: {exc}")
            return True
        overrides = dict(item.split("=", 1) for item in options["model"] if "=" in item)
        wanted = set(options["provider"])
        unknown = wanted - set(configs)
        if unknown:
            raise CommandError(f"Unknown provider(s): {', '.join(sorted(unknown))}")
        probes: list[tuple[Probe, Any]] = []
        for name, config in configs.items():
            if wanted and name not in wanted:
                continue
            probe = Probe(
                name, sources.get(name, "?"), config.adapter, probe_model(name, config, routes, overrides)
            )
            if probe.model is None:
                probe.detail = f"no model to try: pass --model {name}=MODEL"
            elif (
                probe.source == "default"
                and not config.api_key
                and not _is_local(config.base_url)
                and name not in wanted
            ):
                probe.detail = "built-in default without an API key"
            probes.append((probe, config))
        runnable = [(p, c) for p, c in probes if not p.detail]

        async def run_all() -> None:
            await asyncio.gather(*(run_probe(p, c, options["timeout"]) for p, c in runnable))

        if runnable:
            asyncio.run(run_all())
        self.stdout.write("Providers:")
        for probe, _ in probes:
            style = {"ok": self.style.SUCCESS, "FAILED": self.style.ERROR}.get(
                probe.verdict, self.style.WARNING
            )
            self.stdout.write(
                f"  {style(f'{probe.verdict:<12}')}{probe.provider} ({probe.source}, {probe.adapter}): {probe.detail}"
            )
        return any(p.failure for p, _ in probes)
