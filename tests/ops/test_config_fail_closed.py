"""Issue 16, finding 1: a config file that turns unusable never means "no keys".

The file declaring client keys is made invalid JSON, then deleted, while a real server runs:
keyless requests stay refused, owner scoping stays, the team's key keeps working (the last good
version is served), the log says so and ``/metrics`` shows it. Without any good version (the
file was broken from the start) requests get 503.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from responses_app.errors import ApiError
from responses_app.gateway import keys
from responses_app.gateway.auth import authenticate_default
from tests.support.api import create
from tests.support.server import ServerProcess

TEAM_A = "sk-failclosed-team-a-0001"
TEAM_B = "sk-failclosed-team-b-0002"
TOKEN = "failclosed-metrics-0003"
CONFIG = {
    "keys": [
        {"name": "team-a", "key_env": "FC_TEAM_A_KEY"},
        {"name": "team-b", "key_env": "FC_TEAM_B_KEY"},
    ]
}


@pytest.fixture(scope="module")
def failclosed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("failclosed")
    config = tmp / "openresponses.json"
    config.write_text(json.dumps(CONFIG))
    env = {
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_METRICS_TOKEN": TOKEN,
        "FC_TEAM_A_KEY": TEAM_A,
        "FC_TEAM_B_KEY": TEAM_B,
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="failclosed-server").start()
    yield process, config
    process.stop()


def wait_for_log(server: ServerProcess, text: str, count: int) -> None:
    """Until the server's log holds ``text`` ``count`` times (requests make it re-check the file,
    at most every 2 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.log_path.read_text().count(text) >= count:
            return
        # A request makes the server look at the file; one let in without a key ends the wait too
        # (the old behaviour: the caller's assertions then say what went wrong).
        if httpx.get(server.url + "/v1/responses/resp_poke", timeout=10).status_code != 401:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server never logged {text!r} {count} time(s)")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_still_closed(http: httpx.Client, rid: str) -> None:
    for method in ("GET", "DELETE"):
        answer = http.request(method, f"/v1/responses/{rid}")
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "missing_api_key"
        # The other team is still scoped away from team a's response.
        assert http.request(method, f"/v1/responses/{rid}", headers=bearer(TEAM_B)).status_code == 404
    assert http.get(f"/v1/responses/{rid}", headers=bearer(TEAM_A)).status_code == 200
    assert http.post("/v1/responses", json={"model": "mock-1", "input": "hi"}).status_code == 401


def config_ok(http: httpx.Client) -> float:
    text = http.get("/metrics", headers=bearer(TOKEN)).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families["openresponses_config_file_ok"].samples[0].value


def test_invalid_then_deleted_config_keeps_the_keys(failclosed_server: tuple[ServerProcess, Path]):
    server, config = failclosed_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        rid = create(http, {"model": "mock-1", "input": "team a only"}, headers=bearer(TEAM_A))["id"]
        assert http.get(f"/v1/responses/{rid}").status_code == 401

        config.write_text('{"keys": [')  # a half-written file
        wait_for_log(server, "is unusable", 1)
        assert_still_closed(http, rid)
        assert "last good version" in server.log_path.read_text()
        assert config_ok(http) == 0

        config.unlink()
        wait_for_log(server, "is unusable", 2)
        assert_still_closed(http, rid)
        assert config_ok(http) == 0

        config.write_text(json.dumps(CONFIG))
        wait_for_log(server, "is readable again", 1)
        assert config_ok(http) == 1
        assert http.get(f"/v1/responses/{rid}", headers=bearer(TEAM_A)).status_code == 200
        assert "openresponses_config_file_errors_total 2" in http.get("/metrics", headers=bearer(TOKEN)).text


@pytest.fixture
def fresh_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(keys, "CONFIG_RECHECK_SECONDS", 0.0)
    keys.reset_cache()
    yield
    keys.reset_cache()


def authenticate(token: str | None = None):  # noqa: ANN201 - ClientIdentity
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return authenticate_default(RequestFactory().get("/v1/responses/x", **headers))


@pytest.mark.django_db
@pytest.mark.parametrize("breakage", ["invalid", "deleted"])
def test_keys_layer_keeps_last_good_config(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_keys: None, breakage: str
):
    monkeypatch.setenv("FC_TEAM_A_KEY", TEAM_A)
    monkeypatch.setenv("FC_TEAM_B_KEY", TEAM_B)
    config = tmp_path / "keys.json"
    config.write_text(json.dumps(CONFIG))
    settings.OPENRESPONSES = {"CONFIG_FILE": str(config), "API_KEYS": ""}
    assert authenticate(TEAM_A).owner == "cfg:team-a"
    if breakage == "invalid":
        config.write_text("{not json")
    else:
        config.unlink()
    keys.reset_cache()  # even a cache reset (a key saved in the admin) keeps the last good version
    assert authenticate(TEAM_A).owner == "cfg:team-a"
    with pytest.raises(ApiError) as refused:
        authenticate()
    assert refused.value.status == 401
    assert keys.config_file_error() is not None and keys.config_file_error()[1] is True


@pytest.mark.django_db
@pytest.mark.parametrize("breakage", ["invalid", "deleted"])
def test_never_readable_config_refuses_with_503(settings, tmp_path: Path, fresh_keys: None, breakage: str):
    config = tmp_path / f"never-{breakage}.json"
    if breakage == "invalid":
        config.write_text("{not json")
    settings.OPENRESPONSES = {"CONFIG_FILE": str(config), "API_KEYS": ""}
    for token in (None, TEAM_A):
        with pytest.raises(ApiError) as refused:
            authenticate(token)
        assert refused.value.status in {401, 503}
    with pytest.raises(ApiError) as refused:
        authenticate(TEAM_A)
    assert refused.value.status == 503 and refused.value.code == "config_unavailable"
    assert keys.config_file_error() == (keys._config_state["error"], False)
