"""The request surface: what each provider family does with each field of a create request.

Every field of OpenAI's Responses create request is accepted by validation. Once the route is
known, each field the client set gets one of four treatments for each provider the route may
use (its provider and its fallbacks):

* ``forwarded`` — translated into the provider's own request;
* ``server`` — honoured by this server itself, whatever the provider;
* ``ignored`` — accepted and not forwarded: it carries no meaning for that provider (a caching
  or abuse-tracking hint, client telemetry);
* ``refused`` — it would change the answer and cannot be honoured: a 400
  ``unsupported_parameter`` naming the ``param``. A value that never changes the answer (the
  field's default, e.g. ``presence_penalty: 0``) is never refused.

An operator may relax refusals (LiteLLM's ``drop_params``): ``OPENRESPONSES["DROP_UNSUPPORTED_PARAMS"]``
for every provider, or ``"drop_unsupported_params": true`` in one provider's ``options``. A dropped
field is removed from the request before any provider sees it (and logged).

``docs/providers.md`` shows :data:`FIELDS` as a table; a test keeps the two in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from providers_app.registry import Route, adapter_class, provider_configs
from responses_app.conf import openresponses_settings
from responses_app.errors import invalid
from responses_app.types import CreateRequest

logger = logging.getLogger(__name__)

FORWARDED = "forwarded"
SERVER = "server"
IGNORED = "ignored"
REFUSED = "refused"

#: The provider families of the table, in its column order.
FAMILIES = ("openai", "openai_chat", "anthropic", "gemini", "ollama")
#: Families outside the table: ``mock`` takes every field a provider could refuse (a test double
#: that samples nothing real); any other (a custom adapter) gets the ``openai_chat`` column.
MOCK = "mock"
BASE = "base"


@dataclass(frozen=True)
class Field:
    """One field (dotted for a key of an object field) and its treatment per family."""

    name: str
    treatment: dict[str, str]
    #: Values that never change the answer: accepted whatever the treatment.
    neutral: tuple[Any, ...] = ()
    note: str = ""
    #: A feature this server lacks (not a provider's): refused for every provider, even ``mock``.
    server_feature: bool = False
    #: Per family, the values of a forwarded field that family cannot honour (refused, droppable).
    refused_values: dict[str, Callable[[Any], bool]] = field(default_factory=dict)
    refused_note: str = ""

    def refuses(self, family: str, value: Any) -> bool:
        """Whether ``family`` refuses this field set to ``value``."""
        treatment = self.for_family(family)
        if treatment == REFUSED:
            return True
        check = self.refused_values.get(family)
        return treatment == FORWARDED and check is not None and check(value)

    def for_family(self, family: str) -> str:
        if self.server_feature:
            return REFUSED
        if family in self.treatment:
            return self.treatment[family]
        # A custom adapter gets what Chat Completions gets: the fields every adapter is handed.
        generic = self.treatment["openai_chat"]
        return IGNORED if family == MOCK and generic == REFUSED else generic


def _all(treatment: str) -> dict[str, str]:
    return dict.fromkeys(FAMILIES, treatment)


def forces_a_call(choice: Any) -> bool:
    """``tool_choice`` that forces a call: ``required``, a named tool, or allowed tools in ``required`` mode."""
    if choice in (None, "auto", "none"):
        return False
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return forces_a_call(choice.get("mode") or "auto")
    return True


def _openai(openai: str, others: str) -> dict[str, str]:
    return {family: (openai if family == "openai" else others) for family in FAMILIES}


FIELDS: tuple[Field, ...] = (
    Field("model", _all(SERVER), note="picks the route; the route's upstream model is sent"),
    Field("input", _all(FORWARDED), note="translated to each provider's messages"),
    Field("instructions", _all(FORWARDED), note="the system (or developer) prompt"),
    Field("previous_response_id", _all(SERVER), note="the stored conversation is replayed"),
    Field("store", _all(SERVER)),
    Field("stream", _all(SERVER), note="server-sent events to the client"),
    Field("background", _all(SERVER)),
    Field("metadata", _all(SERVER), note="stored and echoed, never sent upstream"),
    Field("truncation", _all(SERVER), note="`auto` drops the oldest turns to fit the context window"),
    Field("max_tool_calls", _all(SERVER), note="counted by the loop"),
    Field(
        "tools",
        _all(FORWARDED),
        note="per tool type: see the tool-type table (`web_search` runs the provider's own search where it has one)",
    ),
    Field(
        "tool_choice",
        _all(FORWARDED),
        refused_values={"ollama": forces_a_call},
        refused_note="Ollama cannot force a call: `required` or a named tool is refused (droppable to `auto`)",
    ),
    Field("parallel_tool_calls", _all(FORWARDED)),
    Field("temperature", _all(FORWARDED)),
    Field("top_p", _all(FORWARDED)),
    Field("max_output_tokens", _all(FORWARDED)),
    Field("text.format", _all(FORWARDED), note="JSON schema output, translated (an adapter may refuse it)"),
    Field(
        "text.verbosity",
        _openai(FORWARDED, REFUSED),
        neutral=("medium",),
        note="no equivalent outside OpenAI",
    ),
    Field("reasoning.effort", _all(FORWARDED), note="mapped to thinking budgets or levels"),
    Field(
        "reasoning.summary",
        _openai(FORWARDED, IGNORED),
        note="other providers' thinking text is returned as the summary as it comes",
    ),
    Field("reasoning.generate_summary", _openai(FORWARDED, IGNORED), note="deprecated name of `summary`"),
    Field("reasoning.context", _all(REFUSED), neutral=("auto",), note="not forwarded yet"),
    Field("reasoning.mode", _all(REFUSED), neutral=("standard",), note="not forwarded yet"),
    Field("presence_penalty", _all(REFUSED), neutral=(0, 0.0), note="not forwarded yet"),
    Field("frequency_penalty", _all(REFUSED), neutral=(0, 0.0), note="not forwarded yet"),
    Field("top_logprobs", _all(REFUSED), neutral=(0,), note="no adapter returns logprobs"),
    Field("include", _all(SERVER), note="per value: see below"),
    Field("service_tier", _openai(FORWARDED, IGNORED), note="other providers are served at their one tier"),
    Field("prompt_cache_key", _openai(FORWARDED, IGNORED), note="a caching hint"),
    Field("prompt_cache_retention", _openai(FORWARDED, IGNORED), note="a caching hint"),
    Field("prompt_cache_options.mode", _all(IGNORED), note="a caching hint"),
    Field("prompt_cache_options.ttl", _all(IGNORED), note="a caching hint"),
    Field("prompt_cache_options.comparison_response_id", _all(IGNORED), note="cache diagnostics"),
    Field(
        "prompt_cache_options.prewarm",
        _all(REFUSED),
        neutral=(False,),
        note="`true` would answer without sampling",
    ),
    Field("safety_identifier", _openai(FORWARDED, IGNORED), note="abuse tracking"),
    Field("user", _openai(FORWARDED, IGNORED), note="deprecated abuse-tracking and caching hint"),
    Field("client_metadata", _all(IGNORED), note="client telemetry (Codex sends it)"),
    Field(
        "stream_options.include_obfuscation",
        _all(SERVER),
        note="this server never adds `obfuscation` fields: `true` and `false` both get none",
    ),
    Field("background_options.completion_window", _all(IGNORED), note="background work starts at once"),
    Field("background_options.continuation_id", _all(IGNORED), note="a scheduling hint"),
    Field(
        "image.context_compression",
        _all(REFUSED),
        neutral=("auto", "disabled"),
        note="images are sent as given",
    ),
    Field("access_programs.cyber", _openai(REFUSED, IGNORED), neutral=("standard",), note="OpenAI-only"),
    Field("moderation", _all(REFUSED), note="this server runs no moderation", server_feature=True),
    Field(
        "context_management",
        _all(REFUSED),
        note="compact with POST /v1/responses/compact instead",
        server_feature=True,
    ),
    Field("conversation", _all(SERVER), note="stored conversations (`/v1/conversations`)"),
    Field("prompt", _all(REFUSED), note="dashboard-stored prompts do not exist here", server_feature=True),
)
BY_NAME = {f.name: f for f in FIELDS}

#: Tool types: what each family does with each (``loop.tool_types`` applies it, from what each
#: adapter runs itself, its ``native_tool_types``). ``forwarded`` is translated where the provider
#: names it otherwise (``web_search`` -> Anthropic's web search server tool, Gemini's Google Search
#: grounding); ``ignored`` is left out of what the model sees; ``refused`` is a 400
#: ``unsupported_parameter`` on ``tools[i].type``. Dated names (``web_search_preview_2025_03_11``…)
#: are treated as their type. ``docs/providers.md`` shows this table; a test keeps them in step.
_SEARCHING = {
    "openai": FORWARDED,
    "anthropic": FORWARDED,
    "gemini": FORWARDED,
    "openai_chat": IGNORED,
    "ollama": IGNORED,
}
TOOL_TYPES: dict[str, dict[str, str]] = {
    "function": _all(FORWARDED),
    "mcp": _all(SERVER),
    "namespace": _all(FORWARDED),
    "custom": _all(FORWARDED),
    "web_search": _SEARCHING,
    "web_search_preview": _SEARCHING,
    "tool_search": _openai(FORWARDED, IGNORED),
    **{
        kind: _openai(FORWARDED, REFUSED)
        for kind in (
            "file_search",
            "code_interpreter",
            "image_generation",
            "computer_use_preview",
            "computer",
            "local_shell",
            "shell",
            "apply_patch",
            "programmatic_tool_calling",
        )
    },
}

#: ``include`` values: what each asks for, the same for every provider.
INCLUDES: dict[str, str] = {
    "reasoning.encrypted_content": SERVER,
    "message.output_text.logprobs": REFUSED,
    "file_search_call.results": IGNORED,
    "web_search_call.results": IGNORED,
    "web_search_call.action.sources": SERVER,
    "message.input_image.image_url": IGNORED,
    "computer_call_output.output.image_url": IGNORED,
    "code_interpreter_call.outputs": IGNORED,
}
INCLUDE_NOTES = {
    "reasoning.encrypted_content": "reasoning items carry their provider's artefacts, sealed",
    "message.output_text.logprobs": "no adapter returns logprobs",
    "web_search_call.action.sources": "the sources of a search the provider ran, on its `web_search_call` item",
}

REASONS = {
    "prompt": "Stored prompts ('prompt') are not supported by this server: send the prompt's text as "
    "'instructions' and 'input'.",
}


def route_families(route: Route) -> list[tuple[str, str]]:
    """``(provider name, family)`` of the route's provider and of each of its fallbacks."""
    configs = provider_configs()
    out = []
    for name in (route.provider, *(provider for provider, _ in route.fallbacks)):
        config = configs.get(name)
        if config is None:
            continue
        try:
            family = adapter_class(config.adapter).family
        except Exception:  # noqa: BLE001 - an adapter that cannot load fails later, with its own error
            continue
        out.append((name, family if family in FAMILIES or family == MOCK else BASE))
    return out


def _drops(provider: str) -> bool:
    setting = openresponses_settings.DROP_UNSUPPORTED_PARAMS
    if isinstance(setting, str):
        setting = setting.strip().lower() in {"1", "true", "yes", "on"}
    if setting:
        return True
    config = provider_configs().get(provider)
    return bool(config and (config.options or {}).get("drop_unsupported_params"))


def refusals(create: CreateRequest, family: str) -> list[tuple[str, str]]:
    """``(param, message)`` for each field ``create`` sets that ``family`` cannot honour."""
    out = []
    for name, value in create.fields.items():
        if name == "include":
            for index, entry in enumerate(value):
                if INCLUDES.get(entry) == REFUSED and family != MOCK:
                    out.append(
                        (
                            f"include[{index}]",
                            f"'include' value {entry!r} is not supported: {INCLUDE_NOTES.get(entry, '')}.",
                        )
                    )
            continue
        spec = BY_NAME.get(name)
        if spec is None or not spec.refuses(family, value) or _neutral(spec, value):
            continue
        note = spec.note if spec.for_family(family) == REFUSED else spec.refused_note
        reason = REASONS.get(name) or (
            f"'{name}' is not supported for this model's provider ({family})"
            + (f": {note}." if note else ".")
        )
        out.append((name, reason))
    return out


def _neutral(spec: Field, value: Any) -> bool:
    # ``0 == False`` in Python: a boolean matches only a boolean.
    return any(value == n and isinstance(value, bool) == isinstance(n, bool) for n in spec.neutral)


def apply_surface(create: CreateRequest, route: Route) -> None:
    """Refuse (400 ``unsupported_parameter``) or, where the operator allows it, drop every field the
    route's providers cannot honour."""
    for provider, family in route_families(route):
        for param, message in refusals(create, family):
            if not _drops(provider):
                raise invalid(message, param, "unsupported_parameter")
            logger.info("dropped %s for provider %s (DROP_UNSUPPORTED_PARAMS)", param, provider)
            _drop(create, param)


def _drop(create: CreateRequest, param: str) -> None:
    """Remove ``param`` from what the providers will see (its echo goes back to the default)."""
    params = create.params
    if param.startswith("include["):
        index = int(param[len("include[") : -1])
        entry = create.fields["include"][index]
        params["include"] = [v for v in params.get("include") or [] if v != entry]
        return
    create.fields.pop(param, None)
    head, _, key = param.partition(".")
    if key and isinstance(params.get(head), dict):
        params[head].pop(key, None)
    elif param in params:
        params[param] = None
