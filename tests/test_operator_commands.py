"""System checks (stable ids) and the operator commands: openresponses_check, _config_load, _config_dump."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError

from providers_app.models import Provider, RoutingRule
from providers_app.secrets import decrypt, encrypt
from tests.support.server import free_port
from tests.support.upstream import Reply

CLEAR_KEY = "sk-config-file-secret-7777"


def ids(databases: list[str] | None = None) -> set[str]:
    return {
        m.id
        for m in checks.run_checks(tags=["openresponses"], databases=databases)
        if m.id.startswith("openresponses.")
    }


def write(tmp_path: Path, data: dict, name: str = "openresponses.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_clean_configuration_has_no_findings(settings):
    settings.OPENRESPONSES = {"DISPATCH": "inline"}
    assert ids() == set()


def test_import_paths_are_checked(settings, tmp_path):
    config = write(
        tmp_path,
        {"providers": [{"name": "bad", "adapter": "nowhere.Adapter"}], "hosted_tools": ["nowhere.tool"]},
    )
    settings.OPENRESPONSES = {
        "AUTHENTICATE": "nowhere.authenticate",
        "HOSTED_TOOLS": ["tests.support.hosted_tools.get_weather", "nowhere.other_tool"],
        "MIDDLEWARE": ["nowhere.Middleware"],
        "CONFIG_FILE": config,
    }
    messages = checks.run_checks(tags=["openresponses"])
    found = {m.id for m in messages}
    assert {"openresponses.E001", "openresponses.E002", "openresponses.E003", "openresponses.E004"} <= found
    assert sum(m.id == "openresponses.E003" for m in messages) == 2  # settings and config file
    assert all(m.hint for m in messages if m.id.startswith("openresponses.E00"))


def test_unreadable_config_file(settings, tmp_path):
    settings.OPENRESPONSES = {"CONFIG_FILE": str(tmp_path / "missing.json")}
    assert "openresponses.E005" in ids()
    (tmp_path / "broken.json").write_text("{not json")
    settings.OPENRESPONSES = {"CONFIG_FILE": str(tmp_path / "broken.json")}
    assert "openresponses.E005" in ids()


def test_topology_checks(settings, monkeypatch):
    settings.OPENRESPONSES = {"DISPATCH": "threads"}
    assert "openresponses.E006" in ids()
    settings.OPENRESPONSES = {"DISPATCH": "celery"}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert "openresponses.E007" in ids()
    del settings.CHANNEL_LAYERS
    assert "openresponses.E007" in ids()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379"]},
        }
    }
    assert ids() == set()
    settings.OPENRESPONSES = {"DISPATCH": "inline"}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.DEBUG = False
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert "openresponses.W001" in ids()
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert "openresponses.W001" not in ids()


@pytest.mark.django_db
def test_stored_key_checks(settings, monkeypatch):
    monkeypatch.delenv("OPENRESPONSES_ENCRYPTION_KEY", raising=False)
    settings.OPENRESPONSES = {}
    settings.SECRET_KEY = "django-insecure-abc"
    Provider.objects.create(name="stored", adapter="openai_chat", api_key_encrypted=encrypt("sk-stored-1234"))
    assert "openresponses.W002" not in ids()  # database checks run only when asked
    assert "openresponses.W002" in ids(["default"])
    monkeypatch.setenv("OPENRESPONSES_ENCRYPTION_KEY", "a-long-random-operator-key")
    found = ids(["default"])
    assert "openresponses.W002" not in found and "openresponses.E008" in found  # stored under the old key
    Provider.objects.create(name="odd", adapter="nowhere.Adapter")
    assert "openresponses.E002" in ids(["default"])


@pytest.mark.django_db
def test_config_load_and_dump_never_show_keys(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENRESPONSES_ENCRYPTION_KEY", raising=False)
    config = write(
        tmp_path,
        {
            "providers": [
                {
                    "name": "local-chat",
                    "adapter": "openai_chat",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key": CLEAR_KEY,
                    "headers": {"X-Api-Key": "sk-header-secret-8888", "X-Team": "a"},
                    "timeouts": {"connect": 3},
                },
                {
                    "name": "zai",
                    "adapter": "anthropic",
                    "base_url": "https://api.z.ai/api/anthropic/v1",
                    "api_key_env": "ZAI_API_KEY",
                },
            ],
            "routes": [
                {"pattern": "fast", "provider": "local-chat", "model": "qwen2.5-7b-instruct"},
                {"pattern": "glm-*", "provider": "zai"},
                {"pattern": "gpt-*", "provider": "openai"},
            ],
        },
    )
    settings.OPENRESPONSES = {"CONFIG_FILE": config}
    out = StringIO()
    call_command("openresponses_config_load", stdout=out)
    assert "providers 2 created" in out.getvalue() and "routes 3 created" in out.getvalue()
    row = Provider.objects.get(name="local-chat")
    assert (
        decrypt(row.api_key_encrypted) == CLEAR_KEY
        and row.api_key_last4 == "7777"
        and row.connect_timeout == 3
    )
    assert Provider.objects.get(name="zai").api_key_env == "ZAI_API_KEY"
    assert list(RoutingRule.objects.values_list("pattern", "upstream_model")) == [
        ("fast", "qwen2.5-7b-instruct"),
        ("glm-*", ""),
        ("gpt-*", ""),
    ]
    assert RoutingRule.objects.get(pattern="gpt-*").provider_name == "openai"

    dump = StringIO()
    call_command("openresponses_config_dump", stdout=dump)
    text = dump.getvalue()
    assert CLEAR_KEY not in text and "sk-header-secret-8888" not in text
    data = json.loads(text)
    stored = {p["name"]: p for p in data["database"]["providers"]}
    assert stored["local-chat"]["api_key_stored"] is True and stored["zai"]["api_key_env"] == "ZAI_API_KEY"
    assert stored["local-chat"]["headers"] == {"X-Api-Key": "<redacted>", "X-Team": "a"}
    assert (
        data["config_file"]["path"] == config
        and data["config_file"]["providers"][0]["api_key_stored"] is True
    )

    # The database part alone is a loadable config file: loading it back changes nothing and keeps the key.
    part = StringIO()
    call_command("openresponses_config_dump", "--source", "database", stdout=part)
    again = write(tmp_path, json.loads(part.getvalue()), "dumped.json")
    out = StringIO()
    call_command("openresponses_config_load", again, stdout=out)
    assert "providers 0 created, 2 updated; routes 0 created, 3 updated" in out.getvalue()
    assert decrypt(Provider.objects.get(name="local-chat").api_key_encrypted) == CLEAR_KEY

    with pytest.raises(CommandError, match="unknown provider"):
        call_command(
            "openresponses_config_load",
            write(tmp_path, {"routes": [{"pattern": "x", "provider": "nobody"}]}, "bad.json"),
        )


@pytest.mark.django_db
def test_openresponses_check_reaches_each_provider(settings, tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("LOCAL_CHAT_KEY", "sk-local-chat-secret-4242")
    config = write(
        tmp_path,
        {
            "providers": [
                {
                    "name": "local-chat",
                    "adapter": "openai_chat",
                    "base_url": upstream.base_url + "/v1",
                    "api_key_env": "LOCAL_CHAT_KEY",
                },
                {
                    "name": "down",
                    "adapter": "openai_chat",
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "api_key": "sk-down-secret-1",
                },
            ],
            "routes": [
                {"pattern": "fast", "provider": "local-chat", "model": "qwen2.5-7b-instruct"},
                {"pattern": "down-*", "provider": "down"},
            ],
        },
    )
    settings.OPENRESPONSES = {"CONFIG_FILE": config}
    upstream.queue(Reply.fixture("openai_chat/text_stream.sse"))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="check failed"):
        call_command(
            "openresponses_check",
            "--provider",
            "local-chat",
            "--provider",
            "down",
            "--provider",
            "mock",
            "--timeout",
            "5",
            stdout=out,
            stderr=err,
            no_color=True,
        )
    text = out.getvalue() + err.getvalue()
    lines = {
        line.split()[1]: line
        for line in text.splitlines()
        if line.startswith("  ")
        and "(" in line
        and line.split()[0] in {"ok", "FAILED", "skipped", "unavailable"}
    }
    assert lines["local-chat"].split()[0] == "ok" and "qwen2.5-7b-instruct" in lines["local-chat"]
    assert lines["down"].split()[0] == "FAILED"
    assert lines["mock"].split()[0] == "ok"
    assert "dispatch" in text and "config file" in text
    assert "secret" not in text
    sent = upstream.requests[-1].json()
    assert sent["model"] == "qwen2.5-7b-instruct"

    # Only the reachable ones: the command passes.
    upstream.queue(Reply.fixture("openai_chat/text_stream.sse"))
    out = StringIO()
    call_command(
        "openresponses_check", "--provider", "local-chat", "--provider", "mock", stdout=out, no_color=True
    )
    assert "OpenResponses check passed." in out.getvalue()
