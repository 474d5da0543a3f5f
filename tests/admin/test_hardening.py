"""Issue 16, finding 11: admin login throttling, log lines clients cannot forge, /metrics by permission."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from responses_app.observability import logs

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def login(client: Client, password: str):  # noqa: ANN201 - HttpResponse
    return client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": password, "next": "/admin/"}
    )


def test_admin_login_locks_out_after_repeated_failures(settings, admin_user: User):
    settings.AXES_FAILURE_LIMIT = 5
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = login(client, "wrong")
        assert response.status_code == 200  # the form again, with its error
    response = login(client, "wrong")
    assert response.status_code == 429
    # Locked out: the right password does not get in either.
    response = login(client, PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_admin_login_still_works_below_the_limit(settings, admin_user: User):
    settings.AXES_FAILURE_LIMIT = 5
    client = Client()
    for _ in range(2):
        login(client, "wrong")
    response = login(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def format_with(formatter: logging.Formatter, model: str) -> str:
    record = logging.LogRecord(
        "responses_app.api.views",
        logging.INFO,
        __file__,
        1,
        "created %s: model %s via %s for %s",
        ("resp_1", model, "mock", "anonymous"),
        None,
    )
    return formatter.format(record)


FORGED = "mock-1\n2026-12-01 00:00:00,000 WARNING django.security admin password reset\r\x1b[2J\u2028!"


def test_control_characters_never_forge_a_log_line():
    plain = format_with(logs.PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"), FORGED)
    assert "\n" not in plain and "\r" not in plain and "\x1b" not in plain and "\u2028" not in plain
    assert "mock-1\\n2026-12-01" in plain and "\\x1b[2J" in plain and "\\u2028" in plain
    line = format_with(logs.JsonFormatter(), FORGED)
    assert "\n" not in line and "\u2028" not in line
    assert logs.escape_control("plain text, é and 漢字") == "plain text, é and 漢字"


def test_traceback_still_follows_an_escaped_message():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad %s", ("a\nb",), sys.exc_info())
    text = logs.PlainFormatter("%(message)s").format(record)
    assert text.startswith("bad a\\nb\nTraceback")


@pytest.mark.django_db
def test_metrics_need_a_permission_not_just_staff(settings):
    settings.OPENRESPONSES = {"METRICS_TOKEN": "scrape-token-0001"}
    staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/metrics").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200
    root = User.objects.create_superuser("root2", "r@example.com", PASSWORD)
    client.force_login(root)
    assert client.get("/metrics").status_code == 200
    outsider = User.objects.create_user("user", password=PASSWORD)
    outsider.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    client.force_login(outsider)
    assert client.get("/metrics").status_code == 403  # not staff: no admin session counts
    anonymous = Client()
    assert anonymous.get("/metrics").status_code == 403
    scraped = anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0001")
    assert scraped.status_code == 200


def test_authenticate_without_a_request_still_works(admin_user: User):
    """Scripts and the test client's ``login()`` pass no request: no lockout check, no failure."""
    from django.contrib.auth import authenticate

    assert authenticate(username="root", password=PASSWORD) == admin_user
    assert authenticate(username="root", password="wrong") is None
