"""The provider editor cannot read server secrets (issue 16, finding 3).

A staff user holding only ``change_provider`` tries what the audit did: point a provider that has
a stored key at a listener of their own and press "Test connection"; name another team's or the
server's own variable in ``api_key_env``; read a key's last characters off the page.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from providers_app.models import Provider
from providers_app.registry import provider_config_from_row
from providers_app.secrets import SecretError, key_variable_allowed
from tests.support.upstream import Reply

pytestmark = pytest.mark.django_db

STORED_KEY = "sk-team-stored-secret-WXYZ"


@pytest.fixture
def editor() -> Client:
    user = User.objects.create_user("editor", password="pw-editor-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_provider"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def team_provider() -> Provider:
    row = Provider(
        name="team",
        adapter="openai",
        base_url="https://api.openai.example/v1",
        options={"test_model": "gpt-4o-mini"},
        max_retries=0,
    )
    row.set_api_key(STORED_KEY)
    row.save()
    return row


def form_of(row: Provider, **changes: str) -> dict[str, str]:
    form = {
        "name": row.name,
        "adapter": row.adapter,
        "base_url": row.base_url,
        "api_key": "",
        "api_key_env": row.api_key_env,
        "headers": "{}",
        "options": '{"test_model": "gpt-4o-mini"}',
        "connect_timeout": "3",
        "first_byte_timeout": "10",
        "idle_timeout": "10",
        "max_retries": "0",
        "enabled": "on",
    }
    return {**form, **changes}


def keys_received(upstream) -> list[str]:
    return [r.headers.get("authorization", "") for r in upstream.requests]


def test_the_stored_key_is_not_sent_to_a_changed_base_url(editor, team_provider, upstream):
    change = reverse("admin:providers_app_provider_change", args=[team_provider.pk])
    listener = upstream.base_url + "/v1"
    page = editor.post(change, form_of(team_provider, base_url=listener))
    assert page.status_code == 200 and "enter the key again" in page.content.decode()
    team_provider.refresh_from_db()
    assert team_provider.base_url == "https://api.openai.example/v1"

    # Whatever moved it (a shell, a bulk update, a loaded config), the key stays bound to its address.
    Provider.objects.filter(pk=team_provider.pk).update(base_url=listener)
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    test_page = reverse("admin:providers_app_provider_test", args=[team_provider.pk])
    page = editor.post(test_page, {"model": "gpt-4o-mini"}).content.decode()
    assert "Failed" in page and "enter the key again" in page
    action = editor.post(
        reverse("admin:providers_app_provider_changelist"),
        {"action": "test_connection", "_selected_action": [team_provider.pk]},
        follow=True,
    )
    assert "not tested" in action.content.decode()
    assert upstream.requests == []
    with pytest.raises(SecretError):
        provider_config_from_row(Provider.objects.get(pk=team_provider.pk))

    # Entering a key again binds it to the new address: the editor only sends what they typed.
    Provider.objects.filter(pk=team_provider.pk).update(base_url="https://api.openai.example/v1")
    team_provider.refresh_from_db()
    reply = editor.post(change, form_of(team_provider, base_url=listener, api_key="sk-my-own-key-0001"))
    assert reply.status_code == 302
    editor.post(test_page, {"model": "gpt-4o-mini"})
    assert keys_received(upstream) == ["Bearer sk-my-own-key-0001"]


def test_changing_the_adapter_also_needs_the_key_again(editor, team_provider):
    change = reverse("admin:providers_app_provider_change", args=[team_provider.pk])
    page = editor.post(change, form_of(team_provider, adapter="anthropic"))
    assert page.status_code == 200 and "enter the key again" in page.content.decode()
    # Unrelated edits keep the stored key.
    assert editor.post(change, form_of(team_provider, connect_timeout="4")).status_code == 302
    assert provider_config_from_row(Provider.objects.get(pk=team_provider.pk)).api_key == STORED_KEY


@pytest.mark.parametrize(
    "variable", ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OTHER_TEAM_API_KEY", "DJANGO_SECRET_KEY"]
)
def test_api_key_env_names_only_allowed_variables(editor, team_provider, upstream, monkeypatch, variable):
    monkeypatch.setenv(variable, "sk-server-secret-QRST")
    change = reverse("admin:providers_app_provider_change", args=[team_provider.pk])
    page = editor.post(
        change, form_of(team_provider, base_url=upstream.base_url + "/v1", api_key_env=variable)
    )
    assert page.status_code == 200 and "OPENRESPONSES_PROVIDER_KEY_VARIABLES" in page.content.decode()
    assert Provider.objects.get(pk=team_provider.pk).api_key_env == ""

    # A row that names it anyway (saved before the rule, or by a shell) is not used, nor hinted at.
    Provider.objects.filter(pk=team_provider.pk).update(
        api_key_env=variable, base_url=upstream.base_url + "/v1", api_key_encrypted=""
    )
    upstream.queue(Reply.fixture("openai/text_nonstream.json"))
    test_page = reverse("admin:providers_app_provider_test", args=[team_provider.pk])
    page = editor.post(test_page, {"model": "gpt-4o-mini"}).content.decode()
    assert "Failed" in page and upstream.requests == []
    for url in (change, reverse("admin:providers_app_provider_changelist")):
        assert "QRST" not in editor.get(url).content.decode()


def test_the_server_secrets_are_never_allowed_whatever_the_setting(settings):
    settings.OPENRESPONSES_PROVIDER_KEY_VARIABLES = ["*"]
    assert key_variable_allowed("TEAM_X_API_KEY")
    for name in (
        "DJANGO_SECRET_KEY",
        "OPENRESPONSES_ENCRYPTION_KEYS",
        "OPENRESPONSES_API_KEYS",
        "DATABASE_URL",
    ):
        assert not key_variable_allowed(name)
    settings.OPENRESPONSES_PROVIDER_KEY_VARIABLES = ["TEAM_*_API_KEY"]
    assert key_variable_allowed("TEAM_X_API_KEY") and not key_variable_allowed("ANTHROPIC_API_KEY")


def test_an_allowed_variable_shows_whether_it_is_set_never_its_characters(editor, team_provider, monkeypatch):
    monkeypatch.setenv("OPENRESPONSES_PROVIDER_KEY_TEAM", "sk-env-team-secret-LMNO")
    change = reverse("admin:providers_app_provider_change", args=[team_provider.pk])
    reply = editor.post(change, form_of(team_provider, api_key_env="OPENRESPONSES_PROVIDER_KEY_TEAM"))
    assert reply.status_code == 302
    for url in (change, reverse("admin:providers_app_provider_changelist")):
        page = editor.get(url).content.decode()
        assert "OPENRESPONSES_PROVIDER_KEY_TEAM: set" in page and "LMNO" not in page


def test_a_stored_provider_with_a_variable_not_allowed_is_a_check_error():
    from django.core.checks import run_checks

    Provider.objects.create(name="old", adapter="openai", api_key_env="ANTHROPIC_API_KEY")
    found = [m for m in run_checks(databases=["default"]) if m.id == "openresponses.W003"]
    assert found and "ANTHROPIC_API_KEY" in found[0].msg
