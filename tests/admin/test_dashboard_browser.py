"""The dashboard and the browsable management API in the headless browser, with screenshots in
``artifacts/screenshots/`` (dashboard-*.png, manage-api-*.png)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from tests.admin.test_browser import api, browser, console, shot, wait_for  # noqa: F401 - fixtures
from tests.support.server import ROOT

DASHBOARD = "/admin/responses_app/usagerecord/dashboard/"
LONG_INPUT = " ".join(f"token{i}" for i in range(400))  # mock-slow: 50 ms a token, ~20 s


def _status(api: Any, response_id: str) -> str:  # noqa: F811 - the imported fixture's name
    return api.get(f"/v1/responses/{response_id}").json()["status"]


def test_dashboard_charts_and_running_responses(browser: Any, console: Any, api: Any) -> None:  # noqa: F811
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.support.usage_seed"],
        cwd=ROOT,
        env={**console.env, "DJANGO_SETTINGS_MODULE": "openresponses_site.settings"},
        check=True,
        capture_output=True,
        text=True,
    )
    assert int(seeded.stdout.strip()) > 100
    for text in ("hello dashboard", "a second one", "and a third"):
        assert api.post("/v1/responses", json={"model": "mock-1", "input": text}).status_code == 200
    for _ in range(2):
        assert api.post("/v1/responses", json={"model": "mock-fail", "input": "x"}).status_code >= 400
    slow = api.post(
        "/v1/responses", json={"model": "mock-slow", "input": LONG_INPUT, "background": True}
    ).json()
    try:
        assert slow["status"] in {"queued", "in_progress"}
        browser.get(console.url + DASHBOARD + "?window=24h&by=model")
        wait_for(browser, lambda d: d.find_elements("id", "or-chart-ttft"))
        page = browser.page_source
        for name in ("gpt-4o", "claude-sonnet-4", "gemini-2.5-flash", "mock-1", "mock-fail"):
            assert name in browser.find_element("id", "or-legend").text, name
        assert slow["id"] in browser.find_element("id", "or-running").text
        assert browser.find_element("id", "or-running-count").text == "1"
        # Every chart drew lines: points with tooltips in each of the five SVGs.
        for chart in ("requests", "tokens", "cost", "errors", "ttft"):
            svg = browser.find_element("id", f"or-chart-{chart}")
            assert len(svg.find_elements("css selector", "circle")) >= 5, chart
            assert svg.find_elements("css selector", "polyline"), chart
            assert svg.size["width"] > 300, chart
        assert int(browser.find_element("id", "or-total-requests").text) >= 105
        assert int(browser.find_element("id", "or-total-errors").text) >= 2
        assert "cdn" not in page.lower() and '<script src="http' not in page
        shot(browser, "dashboard-by-model-24h")

        browser.find_element("id", "or-by-key").click()
        wait_for(browser, lambda d: "team-a" in d.find_element("id", "or-legend").text)
        assert "static key" in browser.find_element("id", "or-legend").text
        shot(browser, "dashboard-by-key-24h")

        browser.get(console.url + DASHBOARD + "?window=1h&by=provider")
        wait_for(browser, lambda d: d.find_elements("id", "or-chart-requests"))
        assert "mock" in browser.find_element("id", "or-legend").text
        shot(browser, "dashboard-by-provider-1h")
    finally:
        api.post(f"/v1/responses/{slow['id']}/cancel")
    deadline = time.monotonic() + 15
    while _status(api, slow["id"]) in {"queued", "in_progress"} and time.monotonic() < deadline:
        time.sleep(0.2)


def test_browsable_management_api_for_the_logged_in_operator(browser: Any, console: Any) -> None:  # noqa: F811
    browser.get(console.url + "/manage/v1/")
    wait_for(browser, lambda d: "Api Root" in d.page_source or "Root" in d.title)
    assert "/manage/v1/keys/" in browser.page_source
    shot(browser, "manage-api-root")
    browser.get(console.url + "/manage/v1/keys/")
    wait_for(browser, lambda d: d.find_elements("css selector", ".response-info"))
    assert "Client Key List" in browser.page_source
    # The HTML form to create a key is offered to an operator who may add keys.
    assert browser.find_elements(
        "css selector", "form#post-object-form, form .form-actions, #post-generic-content-form"
    )
    shot(browser, "manage-api-keys")
