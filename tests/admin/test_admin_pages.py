"""The admin pages through Django's test client: configuration, keys, transcripts, cancel, delete."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from providers_app.models import Provider, RoutingRule
from providers_app.registry import route_for_model
from providers_app.secrets import decrypt
from responses_app.models import ClientKey, Response, ResponseEvent, ResponseItem
from tests.admin.conftest import assistant_message, user_message

pytestmark = pytest.mark.django_db

PROVIDER_FORM = {
    "name": "team-openai",
    "adapter": "openai",
    "base_url": "http://127.0.0.1:9/v1",
    "api_key": "sk-team-secret-XYZW",
    "api_key_env": "",
    "headers": "{}",
    "options": "{}",
    "connect_timeout": "5",
    "first_byte_timeout": "30",
    "idle_timeout": "30",
    "max_retries": "0",
    "enabled": "on",
}


def test_provider_key_is_encrypted_and_never_shown(admin_client):
    response = admin_client.post(reverse("admin:providers_app_provider_add"), PROVIDER_FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Provider.objects.get(name="team-openai")
    assert row.api_key_last4 == "XYZW"
    assert (
        "sk-team-secret" not in row.api_key_encrypted
        and decrypt(row.api_key_encrypted) == "sk-team-secret-XYZW"
    )
    for url in (
        reverse("admin:providers_app_provider_change", args=[row.pk]),
        reverse("admin:providers_app_provider_changelist"),
    ):
        page = admin_client.get(url).content.decode()
        assert "sk-team-secret" not in page
        assert "XYZW" in page
    # Saving again without a key keeps it; ticking "remove" clears it.
    form = {**PROVIDER_FORM, "api_key": ""}
    assert (
        admin_client.post(reverse("admin:providers_app_provider_change", args=[row.pk]), form).status_code
        == 302
    )
    assert decrypt(Provider.objects.get(pk=row.pk).api_key_encrypted) == "sk-team-secret-XYZW"
    admin_client.post(
        reverse("admin:providers_app_provider_change", args=[row.pk]), {**form, "clear_api_key": "on"}
    )
    assert Provider.objects.get(pk=row.pk).api_key_encrypted == ""


def test_provider_form_rejects_unknown_adapter_and_key_plus_env(admin_client):
    page = admin_client.post(
        reverse("admin:providers_app_provider_add"), {**PROVIDER_FORM, "adapter": "no.such.Adapter"}
    )
    assert page.status_code == 200 and "could not be imported" in page.content.decode()
    page = admin_client.post(
        reverse("admin:providers_app_provider_add"),
        {**PROVIDER_FORM, "api_key_env": "OPENRESPONSES_PROVIDER_KEY_TEAM"},
    )
    assert page.status_code == 200 and "not both" in page.content.decode()
    assert not Provider.objects.exists()


def test_key_from_named_environment_variable(admin_client, monkeypatch):
    monkeypatch.setenv("OPENRESPONSES_PROVIDER_KEY_TEAM", "sk-from-env-ABCD")
    form = {**PROVIDER_FORM, "api_key": "", "api_key_env": "OPENRESPONSES_PROVIDER_KEY_TEAM"}
    assert admin_client.post(reverse("admin:providers_app_provider_add"), form).status_code == 302
    page = admin_client.get(reverse("admin:providers_app_provider_changelist")).content.decode()
    # Whether it is set, never any of its characters (the editor has no right to read it).
    assert "from $OPENRESPONSES_PROVIDER_KEY_TEAM: set" in page and "ABCD" not in page


def test_rules_saved_in_the_admin_route_at_once(admin_client):
    assert route_for_model("team-model") is None
    admin_client.post(reverse("admin:providers_app_provider_add"), PROVIDER_FORM)
    provider = Provider.objects.get(name="team-openai")
    response = admin_client.post(
        reverse("admin:providers_app_routingrule_add"),
        {
            "pattern": "team-*",
            "provider": provider.pk,
            "provider_name": "",
            "upstream_model": "gpt-4o-mini",
            "order": "10",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    route = route_for_model("team-model")
    assert (route.provider, route.upstream_model, route.source) == ("team-openai", "gpt-4o-mini", "database")
    rule = RoutingRule.objects.get()
    admin_client.post(reverse("admin:providers_app_routingrule_delete", args=[rule.pk]), {"post": "yes"})
    assert route_for_model("team-model") is None


def test_rule_needs_exactly_one_known_provider(admin_client):
    url = reverse("admin:providers_app_routingrule_add")
    page = admin_client.post(
        url, {"pattern": "x-*", "provider": "", "provider_name": "", "order": "1", "enabled": "on"}
    )
    assert "Choose one provider" in page.content.decode()
    page = admin_client.post(
        url, {"pattern": "x-*", "provider": "", "provider_name": "nowhere", "order": "1", "enabled": "on"}
    )
    assert "No provider named" in page.content.decode()
    assert (
        admin_client.post(
            url, {"pattern": "x-*", "provider": "", "provider_name": "mock", "order": "1", "enabled": "on"}
        ).status_code
        == 302
    )
    assert route_for_model("x-1").provider == "mock"


def test_resolve_page_answers_with_the_live_routing_code(admin_client):
    page = admin_client.get(
        reverse("admin:providers_app_routingrule_resolve"), {"model": "claude-sonnet-4"}
    ).content.decode()
    assert re.search(r'id="or-route-provider">anthropic<', page)
    assert "claude-*" in page and "default" in page
    page = admin_client.get(
        reverse("admin:providers_app_routingrule_resolve"), {"model": "unknown-model"}
    ).content.decode()
    assert "No route" in page and "404" in page


def test_environment_providers_and_routes_are_listed_read_only(admin_client, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai-LAST")
    from providers_app.registry import registry

    registry.reset()
    page = admin_client.get(reverse("admin:providers_app_provider_changelist")).content.decode()
    assert 'id="or-other-providers"' in page and "anthropic" in page and "default" in page
    assert "set" in page and "LAST" not in page and "sk-env-openai" not in page
    page = admin_client.get(reverse("admin:providers_app_routingrule_changelist")).content.decode()
    assert 'id="or-other-routes"' in page and "claude-*" in page


def test_client_key_secret_shown_once_then_never(admin_client):
    response = admin_client.post(
        reverse("admin:responses_app_clientkey_add"), {"name": "ci", "allowed_models": "mock-*\ngpt-4o*"}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = re.search(r'id="or-new-key"[^>]*>(ork_[^<]+)<', response.content.decode()).group(1)
    key = ClientKey.objects.get()
    assert key.allowed_models == ["mock-*", "gpt-4o*"]
    assert key.secret_hash != token and token.startswith(f"ork_{key.prefix}_")
    for url in (
        reverse("admin:responses_app_clientkey_change", args=[key.pk]),
        reverse("admin:responses_app_clientkey_changelist"),
    ):
        page = admin_client.get(url).content.decode()
        assert token not in page and token[13:] not in page
        assert f"ork_{key.prefix}_" in page


def test_client_key_revoke_button_and_action(admin_client):
    from responses_app.gateway import keys

    row, token = keys.key_create(name="a")
    other, _ = keys.key_create(name="b")
    assert (
        admin_client.post(reverse("admin:responses_app_clientkey_revoke", args=[row.pk])).status_code == 302
    )
    assert ClientKey.objects.get(pk=row.pk).revoked_at is not None
    assert keys.identity_for_key(token) is None
    admin_client.post(
        reverse("admin:responses_app_clientkey_changelist"),
        {"action": "revoke_selected", "_selected_action": [other.pk]},
    )
    assert ClientKey.objects.get(pk=other.pk).revoked_at is not None


def test_responses_list_filters_and_search(admin_client, make_response):
    old = make_response(
        model="gpt-4o",
        provider="openai",
        inputs=[user_message("about penguins")],
        created_at=time.time() - 40 * 86400,
    )
    new = make_response(model="mock-1", status="failed", inputs=[user_message("about zebras")])
    url = reverse("admin:responses_app_response_changelist")
    page = admin_client.get(url).content.decode()
    assert old.id in page and new.id in page and "7" in page
    assert new.id not in admin_client.get(url, {"q": "penguins"}).content.decode()
    assert old.id in admin_client.get(url, {"q": "penguins"}).content.decode()
    assert old.id in admin_client.get(url, {"q": old.id}).content.decode()
    page = admin_client.get(url, {"status__exact": "failed"}).content.decode()
    assert new.id in page and old.id not in page
    page = admin_client.get(url, {"provider": "openai"}).content.decode()
    assert old.id in page and new.id not in page
    page = admin_client.get(url, {"model": "mock-1"}).content.decode()
    assert new.id in page and old.id not in page
    page = admin_client.get(url, {"created": "day"}).content.decode()
    assert new.id in page and old.id not in page
    page = admin_client.get(url, {"created": "older"}).content.decode()
    assert old.id in page and new.id not in page


def test_transcript_shows_chain_messages_tool_calls_usage_and_errors(admin_client, make_response):
    first = make_response(
        inputs=[user_message("What is the weather in Paris?")],
        outputs=[
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_7",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "status": "completed",
            }
        ],
    )
    second = make_response(
        previous=first,
        inputs=[{"type": "function_call_output", "call_id": "call_7", "output": '{"temperature": 21}'}],
        outputs=[
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "The tool said 21 degrees."}],
            },
            assistant_message("It is 21 °C in Paris."),
        ],
        usage={
            "input_tokens": 30,
            "output_tokens": 9,
            "total_tokens": 39,
            "output_tokens_details": {"reasoning_tokens": 5},
        },
        wire_log=[
            {"request": {"headers": {"Authorization": "Bearer sk-wire-secret"}, "body": {"model": "mock-1"}}}
        ],
    )
    third = make_response(
        previous=second,
        status="failed",
        inputs=[user_message("And tomorrow?")],
        error={"code": "upstream_error", "message": "Provider went away", "status": 502},
    )
    page = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(second.id)])
    ).content.decode()
    assert "What is the weather in Paris?" in page  # the earlier turn
    assert (
        "get_weather" in page and "&quot;city&quot;: &quot;Paris&quot;" in page
    )  # call with pretty arguments
    assert "Tool result" in page and "&quot;temperature&quot;: 21" in page
    assert "The tool said 21 degrees." in page and "Reasoning summary" in page
    assert "It is 21 °C in Paris." in page
    assert first.id in page and third.id in page  # earlier and later in the chain
    assert "200 ms" in page and "1.5 s" in page  # first token, total
    assert "39" in page and "of which reasoning" in page
    assert "Provider wire log" in page and "sk-wire-secret" not in page
    assert 'id="or-live"' not in page  # finished: nothing to watch
    failed = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(third.id)])
    ).content.decode()
    assert 'id="or-error"' in failed and "Provider went away" in failed


def test_event_log_raw_json_and_live_endpoint(admin_client, make_response):
    response = make_response(
        status="in_progress",
        events=[
            ("response.created", {"response": {"status": "in_progress"}}),
            ("response.in_progress", {"response": {"status": "in_progress"}}),
            (
                "response.output_text.delta",
                {"delta": "Hel", "item_id": "msg_1", "output_index": 0, "content_index": 0},
            ),
        ],
    )
    page = admin_client.get(
        reverse("admin:responses_app_response_events", args=[quote(response.id)])
    ).content.decode()
    assert page.count('class="or-event"') == 3 and "&#x27;Hel&#x27;" in page and "50 ms" in page
    transcript = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(response.id)])
    ).content.decode()
    assert 'id="or-live"' in transcript and "or-live-config" in transcript and 'id="or-cancel"' in transcript
    url = reverse("admin:responses_app_response_events_json", args=[quote(response.id)])
    body = admin_client.get(url, {"after": 0}).json()
    assert [e["sequence_number"] for e in body["events"]] == [1, 2]
    assert body["status"] == "in_progress" and body["finished"] is False
    assert body["events"][1]["data"]["delta"] == "Hel"
    raw = admin_client.get(reverse("admin:responses_app_response_raw", args=[quote(response.id)]))
    assert raw["Content-Type"].startswith("application/json") and raw.json()["id"] == response.id
    from tests.support.spec import assert_valid_response

    assert_valid_response(raw.json())
    inputs = admin_client.get(
        reverse("admin:responses_app_response_raw", args=[quote(response.id)]), {"part": "input"}
    ).json()
    assert inputs[0]["content"][0]["text"] == "Hello there"


def test_admin_pages_need_a_staff_session(client, make_response):
    response = make_response()
    for name in ("change", "events", "events_json", "raw"):
        reply = client.get(reverse(f"admin:responses_app_response_{name}", args=[quote(response.id)]))
        assert reply.status_code == 302 and "/login/" in reply["Location"]


def test_cancel_goes_through_the_state_machine(admin_client, make_response):
    running = make_response(status="in_progress")
    assert (
        admin_client.get(reverse("admin:responses_app_response_cancel", args=[quote(running.id)])).status_code
        == 405
    )
    reply = admin_client.post(
        reverse("admin:responses_app_response_cancel", args=[quote(running.id)]), follow=True
    )
    assert Response.objects.get(id=running.id).status == "cancelled"
    assert "is cancelled" in reply.content.decode()
    finished = make_response()
    queued = make_response(status="queued")
    admin_client.post(
        reverse("admin:responses_app_response_changelist"),
        {"action": "cancel_selected", "_selected_action": [finished.id, queued.id]},
    )
    assert Response.objects.get(id=finished.id).status == "completed"
    assert Response.objects.get(id=queued.id).status == "cancelled"


def test_deleting_a_response_deletes_its_items_and_events(admin_client, make_response):
    response = make_response(
        outputs=[assistant_message("bye")], events=[("response.created", {"response": {}})]
    )
    assert ResponseItem.objects.filter(response=response).count() == 2
    confirm = admin_client.get(
        reverse("admin:responses_app_response_delete", args=[quote(response.id)])
    ).content.decode()
    assert "2 input and output items" in confirm and "1 stored events" in confirm
    reply = admin_client.post(
        reverse("admin:responses_app_response_delete", args=[quote(response.id)]), {"post": "yes"}
    )
    assert reply.status_code == 302
    assert not Response.objects.filter(id=response.id).exists()
    assert not ResponseItem.objects.filter(response_id=response.id).exists()
    assert not ResponseEvent.objects.filter(response_id=response.id).exists()


def test_responses_cannot_be_added_or_edited_by_hand(admin_client, make_response):
    response = make_response()
    assert admin_client.get(reverse("admin:responses_app_response_add")).status_code == 403
    admin_client.post(
        reverse("admin:responses_app_response_change", args=[quote(response.id)]), {"status": "failed"}
    )
    assert Response.objects.get(id=response.id).status == "completed"


def test_a_cancelled_response_is_watched_until_the_loop_stored_its_output(admin_client, make_response):
    """Cancel flips the status at once; the page keeps watching until the terminal event is stored."""
    response = make_response(status="in_progress")
    response.cancel()
    response.heartbeat_at = time.time()
    response.save()
    page = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(response.id)])
    ).content.decode()
    assert 'id="or-live"' in page and 'id="or-cancel"' not in page
    url = reverse("admin:responses_app_response_events_json", args=[quote(response.id)])
    assert admin_client.get(url).json()["finished"] is False
    ResponseEvent.objects.create(
        response=response,
        sequence_number=0,
        type="openresponses:response.cancelled",
        payload="{}",
        created_at=time.time(),
    )
    assert admin_client.get(url).json()["finished"] is True
    page = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(response.id)])
    ).content.decode()
    assert 'id="or-live"' not in page


def test_the_standalone_site_brands_its_admin(admin_client):
    """``templates/admin/base_site.html`` (the site's own templates folder) names the product."""
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert re.search(r"<title>[^<]*\| OpenResponses</title>", page), page[:500]
    assert '<div id="site-name"><a href="/admin/">OpenResponses</a></div>' in page
    assert "Django administration" not in page


def test_transcript_shows_how_often_the_loop_was_taken_over(admin_client, make_response):
    response = make_response(status="completed")
    Response.objects.filter(id=response.id).update(takeovers=2)
    page = admin_client.get(
        reverse("admin:responses_app_response_change", args=[quote(response.id)])
    ).content.decode()
    assert re.search(r'id="or-takeovers"[^>]*>2</dd>', page)
