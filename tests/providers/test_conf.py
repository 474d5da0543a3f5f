"""providers_app.conf: its own settings, read lazily from OPENRESPONSES; and no import of responses_app."""

from __future__ import annotations

import ast
from pathlib import Path

from providers_app import conf
from providers_app.conf import providers_settings

APP = Path(__file__).resolve().parents[2] / "providers_app"


def test_defaults_when_unset(settings, monkeypatch) -> None:
    monkeypatch.delenv("OPENRESPONSES_PROVIDERS_RECHECK_SECONDS", raising=False)
    monkeypatch.delenv("OPENRESPONSES_CONFIG", raising=False)
    settings.OPENRESPONSES = {}
    assert providers_settings.PROVIDERS == []
    assert providers_settings.PROVIDERS_RECHECK_SECONDS is None
    assert providers_settings.CONFIG_FILE == ""
    assert providers_settings.MOCK_TOKEN_DELAY == 0.0


def test_values_follow_setting_changes(settings) -> None:
    settings.OPENRESPONSES = {"MOCK_TOKEN_DELAY": 0.25, "ROUTES": [{"pattern": "x", "provider": "mock"}]}
    assert providers_settings.MOCK_TOKEN_DELAY == 0.25
    assert providers_settings.ROUTES == [{"pattern": "x", "provider": "mock"}]
    settings.OPENRESPONSES = {"MOCK_TOKEN_DELAY": 0.5}
    assert providers_settings.MOCK_TOKEN_DELAY == 0.5
    assert providers_settings.ROUTES == []


def test_environment_fallback(settings, monkeypatch) -> None:
    monkeypatch.setenv("OPENRESPONSES_PROVIDERS_RECHECK_SECONDS", "9")
    settings.OPENRESPONSES = {"PROVIDERS_RECHECK_SECONDS": None}
    assert providers_settings.PROVIDERS_RECHECK_SECONDS == "9"
    settings.OPENRESPONSES = {"PROVIDERS_RECHECK_SECONDS": 3}
    assert providers_settings.PROVIDERS_RECHECK_SECONDS == 3


def test_responses_settings_read_provider_keys_through_this_module(settings) -> None:
    from responses_app.conf import DEFAULTS, openresponses_settings

    settings.OPENRESPONSES = {"CONFIG_FILE": "/nowhere/openresponses.json"}
    assert not set(DEFAULTS) & set(conf.DEFAULTS)
    assert (
        openresponses_settings.CONFIG_FILE == providers_settings.CONFIG_FILE == "/nowhere/openresponses.json"
    )


def test_responses_settings_kept_as_attributes_follow_setting_changes(settings) -> None:
    """A value read once is a plain attribute afterwards, and a settings change still replaces it."""
    from responses_app.conf import openresponses_settings

    settings.OPENRESPONSES = {"KEEPALIVE_SECONDS": 7}
    assert openresponses_settings.KEEPALIVE_SECONDS == 7
    assert openresponses_settings.__dict__["KEEPALIVE_SECONDS"] == 7
    settings.OPENRESPONSES = {"KEEPALIVE_SECONDS": 9}
    assert openresponses_settings.KEEPALIVE_SECONDS == 9
    settings.OPENRESPONSES = {}
    assert "KEEPALIVE_SECONDS" not in openresponses_settings.__dict__
    assert openresponses_settings.KEEPALIVE_SECONDS != 9


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        providers_settings.DISPATCH  # noqa: B018 - a responses_app key, not ours
    except AttributeError:
        return
    raise AssertionError("providers_settings answered a key it does not own")


def test_providers_app_imports_nothing_from_responses_app() -> None:
    offenders = []
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(APP)}: {n}" for n in names if n.split(".")[0] == "responses_app"
            ]
    assert not offenders, offenders
