"""The OpenAPI document: generated without warnings or errors, valid, served at /manage/v1/schema/."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings_and_validates(tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    # --fail-on-warn: any warning or error of the generator fails; --validate: against the OpenAPI 3 schema.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    assert "/manage/v1/keys/{id}/rotate/:" in out.read_text()


def test_schema_is_served_and_documents_every_endpoint(api: Any) -> None:
    doc = api.get("/manage/v1/schema/", {"format": "json"})
    assert doc.status_code == 200
    schema = doc.json()
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "OpenResponses management API"
    paths = schema["paths"]
    for path in [
        "/manage/v1/providers/",
        "/manage/v1/providers/{id}/",
        "/manage/v1/routes/",
        "/manage/v1/routes/resolve/",
        "/manage/v1/keys/",
        "/manage/v1/keys/{id}/rotate/",
        "/manage/v1/keys/{id}/revoke/",
        "/manage/v1/usage/",
        "/manage/v1/usage/export/",
        "/manage/v1/responses/",
        "/manage/v1/responses/{id}/cancel/",
    ]:
        assert path in paths, path
    # Only the management API: the Responses API is not DRF and is documented by the spec.
    assert not any(p.startswith("/v1/") for p in paths)
    provider = schema["components"]["schemas"]["Provider"]
    assert provider["properties"]["api_key"]["writeOnly"] is True
    assert "api_key" not in provider.get("required", [])
    created = paths["/manage/v1/keys/"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("/NewClientKey")
    assert "key" not in schema["components"]["schemas"]["ClientKey"]["properties"]
    usage = {p["name"] for p in paths["/manage/v1/usage/"]["get"]["parameters"]}
    assert {"since", "until", "key", "model", "provider", "group_by", "page"} <= usage
    assert "text/csv" in paths["/manage/v1/usage/export/"]["get"]["responses"]["200"]["content"]
