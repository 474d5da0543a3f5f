"""Property: whatever the body, parsing and validation end in a result or a 400 naming what is wrong.

In-process (no server), so it runs many examples quickly; ``test_no_5xx`` runs the same
strategies, and schemathesis, against real servers on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from responses_app.api.compact import validate_compact
from responses_app.api.validation import check_json_value, parse_json_body, validate_create
from responses_app.errors import ApiError
from responses_app.models import StoredJSONDecoder, StoredJSONEncoder
from responses_app.services import surface
from tests.support.fuzz import create_bodies, load_spec

SPEC = load_spec()
SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def outcome(validate, raw: str):  # noqa: ANN001, ANN201 - a validator and its result
    try:
        return validate(parse_json_body(raw.encode("utf-8", "surrogatepass")))
    except ApiError as exc:
        assert exc.status == 400, (exc.status, exc.message)
        assert exc.code, exc.message
        body = exc.body()
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # encodable, even in a WebSocket text frame
        return None


def _strings(value: object) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, child in value.items() for s in [key, *_strings(child)]]
    if isinstance(value, list):
        return [s for child in value for s in _strings(child)]
    return []


@SETTINGS
@given(create_bodies(SPEC))
def test_create_validation_never_raises_anything_but_a_400(raw):
    create = outcome(validate_create, raw)
    if create is not None:
        # What validation lets through is storable: no lone surrogate, no NUL in an identifier,
        # bounded depth; NUL elsewhere goes through the stored-JSON escape and back unchanged.
        # The request surface decides for every family, and dropping what it refuses works.
        for family in (*surface.FAMILIES, surface.MOCK, surface.BASE):
            for param, message in surface.refusals(create, family):
                assert param and message
                surface._drop(create, param)
        stored = {"params": create.params, "input": create.input_items, "model": create.model}
        check_json_value(stored)
        json.dumps(stored).encode("utf-8")
        text = json.dumps(stored, cls=StoredJSONEncoder)
        assert json.loads(text, cls=StoredJSONDecoder) == json.loads(json.dumps(stored))
        assert not any("\x00" in s for s in _strings(json.loads(text))), "no NUL reaches the database"


@SETTINGS
@given(create_bodies(SPEC, "CompactResponseMethodPublicBody"))
def test_compact_validation_never_raises_anything_but_a_400(raw):
    compact = outcome(validate_compact, raw)
    if compact is not None:
        check_json_value({"input": compact.input_items, "model": compact.model})


def test_a_body_that_is_a_bad_string_is_a_400() -> None:
    """Found by the property above: a body that is only ``"\\u0000"`` raised IndexError (a 500), and
    ``"\\ud800"`` was refused as ``Invalid 'None'``."""
    for raw in ('"\\u0000"', '"\\ud800"', '"a\\u0000\\udc00"'):
        for validate in (validate_create, validate_compact):
            assert outcome(validate, raw) is None
            try:
                validate(parse_json_body(raw.encode()))
            except ApiError as exc:
                assert "None" not in exc.message, exc.message
