"""Registry (routing order, config sources, cache invalidation), system checks, and the base
adapter's guards (key masking, tool allow-list)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from providers_app import registry as reg
from providers_app.adapters.base import (
    Finish,
    ModelRequest,
    ProviderAdapter,
    ProviderConfig,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamError,
)
from providers_app.checks import check_provider_config
from providers_app.models import Provider, RoutingRule
from tests.support.adapters import collect_until_error, user
from tests.support.custom_adapter import AcmeAdapter


@pytest.fixture
def settings_with(settings, tmp_path):
    """Apply an ``OPENRESPONSES`` dict (and optionally a config file) with a fresh registry."""

    def apply(config: dict[str, Any] | None = None, *, suffix: str = ".json", **values: Any) -> None:
        merged = dict(values)
        if config is not None:
            path = tmp_path / f"config{suffix}"
            if suffix == ".json":
                path.write_text(json.dumps(config))
            else:
                import yaml

                path.write_text(yaml.safe_dump(config))
            merged["CONFIG_FILE"] = str(path)
        settings.OPENRESPONSES = {**getattr(settings, "OPENRESPONSES", {}), "CONFIG_FILE": "", **merged}

    yield apply
    reg.registry.reset()


def route(model: str) -> tuple[str, str, str] | None:
    found = reg.route_for_model(model)
    return (found.provider, found.upstream_model, found.source) if found else None


@pytest.mark.django_db
def test_default_routes(settings_with):
    settings_with()
    assert route("gpt-4o") == ("openai", "gpt-4o", "default")
    for model in ("o1-mini", "o3", "o4-mini"):
        assert route(model)[0] == "openai"
    assert route("claude-sonnet-4-5")[0] == "anthropic"
    assert route("gemini-2.5-pro")[0] == "gemini"
    for model in ("llama3.2", "mistral-small", "phi4", "qwen2.5:7b"):
        assert route(model)[0] == "ollama"
    assert route("unknown-model") is None


@pytest.mark.django_db
def test_environment_defaults(settings_with, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://anthropic.local/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k-ant")
    monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    settings_with()
    configs = reg.provider_configs()
    assert (configs["anthropic"].base_url, configs["anthropic"].api_key) == (
        "http://anthropic.local/v1",
        "k-ant",
    )
    assert configs["ollama"].base_url == "http://localhost:11434"
    assert configs["gemini"].base_url == "https://generativelanguage.googleapis.com/v1beta"


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_routes_before_defaults(settings_with, monkeypatch, suffix):
    monkeypatch.setenv("ZAI_API_KEY", "zai-key")
    settings_with(
        {
            "providers": [
                {
                    "name": "zai",
                    "adapter": "anthropic",
                    "base_url": "https://api.z.ai/api/anthropic/v1",
                    "api_key_env": "ZAI_API_KEY",
                    "timeouts": {"connect": 1, "first_byte": 30, "idle": 5},
                    "max_retries": 4,
                },
                {
                    "name": "mine",
                    "adapter": "tests.support.custom_adapter.AcmeAdapter",
                    "base_url": "http://acme",
                },
            ],
            "routes": [
                {"pattern": "glm-*", "provider": "zai"},
                {"pattern": "gpt-4o", "provider": "mine", "model": "acme-large"},
            ],
        },
        suffix=suffix,
    )
    assert route("glm-4.6") == ("zai", "glm-4.6", "config file")
    assert route("gpt-4o") == ("mine", "acme-large", "config file")
    assert route("gpt-4.1")[0] == "openai"
    zai = reg.provider_configs()["zai"]
    assert (zai.api_key, zai.connect_timeout, zai.first_byte_timeout, zai.idle_timeout, zai.max_retries) == (
        "zai-key",
        1.0,
        30.0,
        5.0,
        4,
    )
    assert isinstance(reg.get_adapter("mine"), AcmeAdapter)
    assert type(reg.get_adapter("zai")).__name__ == "AnthropicAdapter"


@pytest.mark.django_db
def test_settings_providers_and_routes_after_the_file(settings_with):
    settings_with(
        {"routes": [{"pattern": "shared-*", "provider": "from-settings", "model": "via-file"}]},
        PROVIDERS=[{"name": "from-settings", "adapter": "openai_chat", "base_url": "http://s/v1"}],
        ROUTES=[
            {"pattern": "shared-*", "provider": "openai"},
            {"pattern": "only-settings", "provider": "from-settings"},
        ],
    )
    assert route("shared-1") == ("from-settings", "via-file", "config file")
    assert route("only-settings") == ("from-settings", "only-settings", "settings")


@pytest.mark.django_db
def test_bad_route_is_a_config_error(settings_with):
    settings_with({"routes": [{"pattern": "x-*", "provider": "nowhere"}]})
    with pytest.raises(reg.ConfigError, match="unknown provider 'nowhere'"):
        reg.route_for_model("x-1")


@pytest.mark.django_db
def test_database_rules_first_and_cache_reset_on_change(settings_with):
    settings_with(
        {
            "providers": [{"name": "file-chat", "adapter": "openai_chat", "base_url": "http://f/v1"}],
            "routes": [{"pattern": "claude-*", "provider": "file-chat"}],
        }
    )
    assert route("claude-x")[0] == "file-chat"
    provider = Provider.objects.create(name="db-claude", adapter="anthropic", base_url="http://db/v1")
    rule = RoutingRule.objects.create(
        pattern="claude-*", provider=provider, upstream_model="claude-db", order=1
    )
    assert route("claude-x") == ("db-claude", "claude-db", "database"), "post_save reset the cache"
    RoutingRule.objects.create(pattern="gpt-*", provider_name="file-chat", order=2)
    assert route("gpt-4o")[0] == "file-chat", "a rule may point at a provider defined in the file"
    rule.delete()
    assert route("claude-x")[0] == "file-chat", "post_delete reset the cache"
    RoutingRule.objects.create(pattern="llama*", provider_name="nowhere", order=3)
    assert route("llama3")[0] == "ollama", "a rule naming an unknown provider is skipped"


@pytest.mark.django_db
def test_changes_by_another_process_are_noticed(settings_with):
    """``QuerySet.update`` sends no signal (as a row changed by another process): the recheck sees it."""
    settings_with(PROVIDERS_RECHECK_SECONDS=0)
    provider = Provider.objects.create(name="db-one", adapter="openai_chat", base_url="http://one/v1")
    RoutingRule.objects.create(pattern="team-*", provider=provider)
    assert route("team-a")[0] == "db-one"
    RoutingRule.objects.filter(pattern="team-*").update(enabled=False)
    assert route("team-a")[0] == "db-one", "still cached"
    reg.registry.refresh_if_changed()
    assert route("team-a") is None


@pytest.mark.django_db(transaction=True)
def test_async_lookups_never_touch_the_database_on_the_loop(settings_with):
    settings_with()
    Provider.objects.create(name="db-async", adapter="openai_chat", base_url="http://a/v1")
    reg.registry.reset()

    async def lookups() -> tuple[Any, Any]:
        return await reg.aroute_for_model("gpt-4o"), await reg.aget_adapter("db-async")

    found, adapter = asyncio.run(lookups())
    assert found.provider == "openai" and adapter.config.base_url == "http://a/v1"


# --------------------------------------------------------------------------- checks


def _ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


def test_checks_clean_configuration(settings_with, monkeypatch):
    monkeypatch.setenv("ZAI_API_KEY", "x")
    settings_with(
        {
            "providers": [
                {
                    "name": "zai",
                    "adapter": "anthropic",
                    "base_url": "https://api.z.ai/api/anthropic/v1",
                    "api_key_env": "ZAI_API_KEY",
                }
            ],
            "routes": [{"pattern": "glm-*", "provider": "zai"}],
        }
    )
    assert check_provider_config() == []


def test_checks_report_each_problem_with_its_id(settings_with, monkeypatch):
    monkeypatch.delenv("UNSET_KEY_FOR_CHECKS", raising=False)
    settings_with(
        {
            "providers": [
                {"adapter": "openai"},
                {"name": "bad-url", "adapter": "openai", "base_url": "ftp://x"},
                {"name": "bad-timeouts", "adapter": "openai", "timeouts": {"idle": 0}, "max_retries": -1},
                {"name": "bad-number", "adapter": "openai", "timeouts": {"connect": "soon"}},
                {"name": "no-key", "adapter": "openai", "api_key_env": "UNSET_KEY_FOR_CHECKS"},
            ],
            "routes": [{"pattern": "a-*", "provider": "ghost"}, {"provider": "openai"}],
        },
        PROVIDERS=[{"name": "settings-bad", "adapter": "no.such.Adapter"}],
    )
    assert _ids(check_provider_config()) == sorted(
        [
            "openresponses.E002",
            "openresponses.E101",
            "openresponses.E101",
            "openresponses.E102",
            "openresponses.E102",
            "openresponses.E103",
            "openresponses.E104",
            "openresponses.E104",
            "openresponses.W101",
        ]
    )


# --------------------------------------------------------------------------- base adapter guards


class ScriptedAdapter(ProviderAdapter):
    """Yields a fixed script, or raises an error that quotes the key."""

    family = "scripted"

    async def sample(self, request: ModelRequest, *, stream: bool):
        for chunk in self.config.options["script"]:
            yield chunk
        if self.config.options.get("fail"):
            raise UpstreamError(f"bad key {self.config.api_key} given", status=502)


def scripted(*script, fail: bool = False) -> ScriptedAdapter:
    return ScriptedAdapter(
        ProviderConfig(
            "scripted", "x", api_key="sk-very-secret-123", options={"script": list(script), "fail": fail}
        )
    )


def test_errors_never_carry_the_key():
    chunks, error = collect_until_error(
        scripted(TextDelta("hi"), fail=True), ModelRequest(model="m", items=[user("x")])
    )
    assert chunks == [TextDelta("hi")]
    assert error.message == "bad key *** given" and "sk-very-secret" not in str(error)


TOOLS = [{"type": "function", "name": "get_time"}, {"type": "function", "name": "get_weather"}]


@pytest.mark.parametrize(
    ("choice", "refused"),
    [
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_time"}]},
            True,
        ),
        ("none", True),
        ("auto", False),
    ],
)
def test_calls_outside_the_allow_list_are_refused(choice, refused):
    adapter = scripted(ToolCallStart("c1", "get_weather"), ToolCallDelta("{}"), Finish("tool_calls"))
    chunks, error = collect_until_error(
        adapter, ModelRequest(model="m", items=[user("x")], tools=TOOLS, tool_choice=choice)
    )
    if refused:
        assert chunks == [] and error.code == "tool_not_allowed" and error.error_type == "model_error"
    else:
        assert error is None and chunks[-1] == Finish("tool_calls")


def test_undeclared_tool_passes_to_the_client():
    """A name the request never declared is not the adapter's to refuse: the client gets the call."""
    adapter = scripted(ToolCallStart("c1", "rm_rf"), Finish("tool_calls"))
    chunks, error = collect_until_error(adapter, ModelRequest(model="m", items=[user("x")], tools=TOOLS))
    assert error is None and chunks == [ToolCallStart("c1", "rm_rf"), Finish("tool_calls")]


def test_undeclared_tool_under_allowed_tools_passes_but_a_declared_one_is_refused():
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_time"}]}
    request = ModelRequest(model="m", items=[user("x")], tools=TOOLS, tool_choice=choice)
    chunks, error = collect_until_error(scripted(ToolCallStart("c1", "rm_rf"), Finish("tool_calls")), request)
    assert error is None and chunks[0] == ToolCallStart("c1", "rm_rf")
    _chunks, error = collect_until_error(
        scripted(ToolCallStart("c1", "get_weather"), Finish("tool_calls")), request
    )
    assert error.code == "tool_not_allowed" and error.status == 502, "a model error, not a server bug"


def test_config_file_value_is_one_key_copied_and_follows_the_file(tmp_path):
    from providers_app.registry import config_file_value

    path = tmp_path / "openresponses.json"
    path.write_text(json.dumps({"hosted_tools": ["a.b"], "providers": []}))
    first = config_file_value(str(path), "hosted_tools")
    assert first == ["a.b"]
    first.append("changed.by.caller")
    assert config_file_value(str(path), "hosted_tools") == ["a.b"]  # a copy: the cache is intact
    assert config_file_value(str(path), "missing") is None
    path.write_text(json.dumps({"hosted_tools": ["a.b", "c.d"]}))
    assert config_file_value(str(path), "hosted_tools") == ["a.b", "c.d"]
