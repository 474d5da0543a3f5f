"""The operators' console in a real headless browser (Debian's chromium + chromedriver) against daphne.

Without chromium these tests skip, except under ``CI=true`` where they fail. Screenshots are kept
in ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.server import ARTIFACTS, ROOT, ServerProcess
from tests.support.spec import assert_valid_error, assert_valid_response, assert_valid_stream
from tests.support.sse import parse_sse

SCREENSHOTS = ARTIFACTS / "screenshots"
STATIC_KEY = "sk-browser-static-key"
ADMIN_USER, ADMIN_PASSWORD = "operator", "operator-password-1"
LONG_INPUT = " ".join(f"word{i}" for i in range(90))


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        try:
            import selenium  # noqa: F401
        except ImportError:
            browser = None
    if not (browser and driver):
        reason = "chromium, chromedriver and selenium are needed (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason)
        pytest.skip(reason)
    return browser, driver


@pytest.fixture(scope="module")
def console(fake_upstream, tmp_path_factory) -> Iterator[ServerProcess]:
    """A server of its own (client keys change who may call it), with an operator account."""
    _chromium()
    tmp = tmp_path_factory.mktemp("console")
    config = tmp / "openresponses.json"
    config.write_text(
        json.dumps(
            {
                "providers": [
                    {
                        "name": "local-chat",
                        "adapter": "openai_chat",
                        "base_url": fake_upstream.base_url + "/v1",
                        "api_key_env": "LOCAL_CHAT_KEY",
                    }
                ],
                "routes": [{"pattern": "chat-*", "provider": "local-chat"}],
            }
        )
    )
    env = {
        **upstream_env(fake_upstream.base_url),
        "LOCAL_CHAT_KEY": "sk-local-chat-secret-0004",
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_HOSTED_TOOLS": "tests.support.hosted_tools.get_weather",
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": STATIC_KEY,
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
    }
    process = ServerProcess(env, name="console-server").start()
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            ADMIN_USER,
            "--email",
            "ops@example.com",
        ],
        cwd=ROOT,
        env=process.env,
        check=True,
        capture_output=True,
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser(console: ServerProcess) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    profile = tempfile.mkdtemp(prefix="or-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(console.url + "/admin/login/")
        driver.find_element("id", "id_username").send_keys(ADMIN_USER)
        driver.find_element("id", "id_password").send_keys(ADMIN_PASSWORD)
        driver.find_element("css selector", "input[type=submit]").click()
        wait_for(driver, lambda d: "Site administration" in d.page_source)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def api(console: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=console.url, timeout=30, headers={"Authorization": f"Bearer {STATIC_KEY}"}
    ) as client:
        yield client


def open_response_page(driver: Any, base_url: str, response_id: str, timeout: float = 15.0) -> None:
    """Open a response's admin page (its id quoted as the admin quotes it: ``_26`` would read as ``&``),
    reloading while it is not there yet."""
    from django.contrib.admin.utils import quote

    deadline = time.monotonic() + timeout
    while True:
        driver.get(base_url + f"/admin/responses_app/response/{quote(response_id)}/change/")
        if driver.find_elements("id", "or-status"):
            return
        assert time.monotonic() < deadline, (
            f"the admin page of {response_id} did not appear: {driver.page_source[:300]}"
        )
        time.sleep(0.25)


def wait_for(driver: Any, condition: Any, timeout: float = 15.0) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Pages reload by themselves (the live view does when a response ends): retry on stale elements.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)


def shot(driver: Any, name: str) -> None:
    """A screenshot of the whole page, not just the window (Chrome DevTools' capture beyond the viewport)."""
    import base64

    data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(data["data"]))


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def submit_form(driver: Any, fields: dict[str, str], button: str = "input[name=_save]") -> None:
    for name, value in fields.items():
        element = driver.find_element("name", name)
        if element.get_attribute("type") == "checkbox":
            if element.is_selected() != bool(value):
                element.click()
            continue
        element.clear()
        element.send_keys(value)
    driver.find_element("css selector", button).click()


def test_login_lands_on_the_console(browser, console):
    browser.get(console.url + "/admin/")
    page = browser.page_source
    for section in ("Providers", "Routing rules", "Responses", "Client API keys"):
        assert section in page
    # The admin's own CSS is served (the page is styled, not bare HTML).
    assert httpx.get(console.url + "/static/admin/css/base.css").status_code == 200
    shot(browser, "01_index")


def test_add_provider_and_routing_rule(browser, console, api):
    browser.get(console.url + "/admin/providers_app/provider/add/")
    submit_form(
        browser,
        {
            "name": "team-mock",
            "adapter": "mock",
            "api_key": "sk-browser-provider-secret-7788",
            "options": '{"test_model": "mock-1"}',
        },
    )
    wait_for(browser, lambda d: "was added successfully" in d.page_source)
    page = browser.page_source
    assert "sk-browser-provider-secret" not in page and "…7788" in page
    assert "local-chat" in text_of(browser, "or-other-providers") and "config file" in text_of(
        browser, "or-other-providers"
    )
    shot(browser, "02_providers")

    browser.find_element("link text", "team-mock").click()
    wait_for(browser, lambda d: "stored encrypted (…7788)" in d.page_source)
    assert "sk-browser-provider-secret" not in browser.page_source
    browser.find_element("id", "or-test-connection").click()
    browser.find_element("id", "or-run-test").click()
    wait_for(browser, lambda d: "Connected" in text_of(d, "or-test-result"))
    shot(browser, "03_test_connection")

    browser.get(console.url + "/admin/providers_app/routingrule/add/")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "provider")).select_by_visible_text("team-mock")
    submit_form(browser, {"pattern": "team-*", "upstream_model": "mock-team", "order": "5"})
    wait_for(browser, lambda d: "was added successfully" in d.page_source)
    assert "chat-*" in text_of(browser, "or-other-routes")
    shot(browser, "04_routing_rules")

    browser.find_element("id", "or-resolve-link").click()
    submit_form(browser, {"model": "team-alpha"}, button="#or-resolve")
    wait_for(browser, lambda d: "team-alpha" in d.current_url)
    assert text_of(browser, "or-route-provider") == "team-mock"
    assert text_of(browser, "or-route-upstream") == "mock-team"
    shot(browser, "05_which_provider")

    data = api.post("/v1/responses", json={"model": "team-alpha", "input": "routed?"}).json()
    assert_valid_response(data)
    assert data["status"] == "completed" and data["model"] == "team-alpha"
    open_response_page(browser, console.url, data["id"])
    assert "team-mock" in browser.page_source and "mock-team" in browser.page_source


def test_client_key_created_used_restricted_and_revoked(browser, console):
    browser.get(console.url + "/admin/responses_app/clientkey/add/")
    submit_form(browser, {"name": "browser-client", "allowed_models": "mock-*"})
    token = wait_for(browser, lambda d: d.find_element("id", "or-new-key").text.strip())
    assert token.startswith("ork_")
    shot(browser, "06_key_created")

    with httpx.Client(
        base_url=console.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        ok = client.post("/v1/responses", json={"model": "mock-1", "input": "with my own key"})
        assert ok.status_code == 200
        assert_valid_response(ok.json())
        denied = client.post("/v1/responses", json={"model": "team-alpha", "input": "not mine"})
        assert denied.status_code == 403
        assert_valid_error(denied.json())
        assert denied.json()["error"]["code"] == "model_not_allowed"

        browser.find_element("link text", "I have copied it — show the key").click()
        wait_for(browser, lambda d: "Revoke this key" in d.page_source)
        assert token not in browser.page_source
        assert "-" != browser.find_element("css selector", ".field-last_used_at .readonly").text.strip()
        browser.find_element("id", "or-revoke").click()
        wait_for(browser, lambda d: "now get 401" in d.page_source)
        shot(browser, "07_key_revoked")
        revoked = client.post("/v1/responses", json={"model": "mock-1", "input": "after revoking"})
        assert revoked.status_code == 401
        assert_valid_error(revoked.json())
    unknown = httpx.post(
        console.url + "/v1/responses",
        json={"model": "mock-1", "input": "x"},
        headers={"Authorization": "Bearer ork_00000000_nope"},
    )
    assert unknown.status_code == 401


def test_finished_conversation_reads_like_a_transcript(browser, console, api):
    first = api.post(
        "/v1/responses",
        json={
            "model": "mock-1",
            "input": "What is the weather in Paris?",
            "tools": [{"type": "function", "name": "get_weather"}],
        },
    ).json()
    assert_valid_response(first)
    assert first["status"] == "completed", first
    second = api.post(
        "/v1/responses",
        json={"model": "mock-1", "input": "Thanks, and in Lyon?", "previous_response_id": first["id"]},
    ).json()
    assert_valid_response(second)

    browser.get(console.url + "/admin/responses_app/response/")
    assert first["id"] in browser.page_source and second["id"] in browser.page_source
    shot(browser, "08_responses_list")
    browser.find_element("name", "q").send_keys("weather in Paris\n")
    wait_for(browser, lambda d: "q=" in d.current_url)
    assert first["id"] in browser.page_source and second["id"] not in browser.page_source

    browser.find_element("css selector", f'span.or-id[title="{first["id"]}"]').click()
    transcript = wait_for(browser, lambda d: d.find_element("id", "or-transcript"))
    text = transcript.text
    assert "What is the weather in Paris?" in text
    assert (
        "tool call · get_weather" in text.lower() and '"city": "Paris"' in text
    )  # labels are styled upper-case
    assert "tool result · get_weather" in text.lower() and "sunny" in text
    assert "The tool returned:" in text
    assert second["id"] in browser.page_source  # the conversation continues
    assert text_of(browser, "or-first-token") != "—"
    shot(browser, "09_transcript")

    browser.find_element("id", "or-events-link").click()
    wait_for(browser, lambda d: d.find_elements("css selector", "tr.or-event"))
    rows = browser.find_elements("css selector", "tr.or-event")
    assert rows[0].text.startswith("0 response.created") and "response.completed" in rows[-1].text
    rows[0].find_element("tag name", "summary").click()
    assert '"sequence_number": 0' in rows[0].find_element("tag name", "pre").text
    shot(browser, "10_event_log")


def _stream_in_thread(
    console: ServerProcess, body: dict[str, Any]
) -> tuple[threading.Thread, queue.Queue, dict[str, Any]]:
    """POST a streaming request from a thread; the response id is put on the queue at the first event."""
    ids: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def run() -> None:
        with httpx.Client(
            base_url=console.url, timeout=60, headers={"Authorization": f"Bearer {STATIC_KEY}"}
        ) as client:
            with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
                raw = ""
                for chunk in response.iter_text():
                    raw += chunk
                    if ids.empty() and "response.created" in raw:
                        events, _ = parse_sse(raw.rsplit("\n\n", 1)[0] + "\n\n")
                        ids.put(events[0]["response"]["id"])
        result["raw"] = raw

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ids, result


def test_watch_a_streaming_response_live(browser, console):
    # 240 words at 50 ms a word: about 12 s of streaming to watch.
    words = " ".join(f"word{i}" for i in range(240))
    thread, ids, result = _stream_in_thread(console, {"model": "mock-slow", "input": words})
    response_id = ids.get(timeout=15)
    open_response_page(browser, console.url, response_id)
    early = wait_for(browser, lambda d: (lambda t: t if len(t) > 20 else None)(text_of(d, "or-live-text")))
    later = wait_for(
        browser, lambda d: (lambda t: t if len(t) > len(early) + 40 else None)(text_of(d, "or-live-text"))
    )
    assert later.startswith(early)  # it grew, in order, without reloading the page
    assert "You said: word0 word1" in later
    shot(browser, "11_live_streaming")
    # When the response finishes the page reloads into the final transcript.
    wait_for(
        browser,
        lambda d: not d.find_elements("id", "or-live") and "Completed" in text_of(d, "or-status"),
        timeout=45,
    )
    assert "word239" in text_of(browser, "or-transcript")
    shot(browser, "12_live_finished")
    thread.join(30)
    events, done = parse_sse(result["raw"])
    assert done
    assert_valid_stream(events)
    assert events[-1]["response"]["status"] == "completed"


def test_cancel_a_running_response(browser, console, api):
    started = api.post(
        "/v1/responses",
        json={"model": "mock-slow", "input": LONG_INPUT + " " + LONG_INPUT, "background": True},
    ).json()
    assert_valid_response(started)
    open_response_page(browser, console.url, started["id"])
    wait_for(browser, lambda d: len(text_of(d, "or-live-text")) > 10)
    browser.find_element("id", "or-cancel").click()
    wait_for(
        browser, lambda d: "Cancelled" in text_of(d, "or-status") and not d.find_elements("id", "or-live")
    )
    assert "is cancelled" in browser.page_source
    # The page waited for the loop to store what was said before the cancel.
    assert "You said: word0" in text_of(browser, "or-transcript")
    shot(browser, "13_cancelled")
    deadline = time.monotonic() + 10
    while True:
        data = api.get(f"/v1/responses/{started['id']}").json()
        assert_valid_response(data)
        if data["status"] == "cancelled" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert data["status"] == "cancelled"
    words = sum(
        len(part["text"].split())
        for item in data["output"]
        for part in item.get("content", [])
        if "text" in part
    )
    assert words < 180  # the loop stopped early
