"""Hypothesis strategies for request bodies, derived from the spec document's request schemas.

Each node of a schema is generated either as the schema says (enums, types, properties, items,
``anyOf``/``oneOf``, ``$ref``) or, now and then, as an arbitrary hostile JSON value in its place:
wrong types, lists and objects where strings belong, NUL and lone surrogates, NaN and huge
numbers, deep nesting. The body as a whole is sometimes raw text that no JSON encoder makes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SPEC = Path(__file__).resolve().parents[1] / "spec" / "openapi.json"
#: Models the test servers route to the mock provider (so valid bodies run the whole path).
MOCK_MODELS = ("mock-1", "mock-fuzz")
HOSTILE_STRINGS = (
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "😀",
    "m" * 81,
    "m" * 201,
    "auto",
    "none",
    "function",
    "message",
    "user",
    "assistant",
    "input_text",
    "reasoning.encrypted_content",
)


OPENAI_EXTRA_FIELDS = (
    "client_metadata",
    "prompt_cache_retention",
    "prompt_cache_options",
    "background_options",
    "context_management",
    "image",
    "moderation",
    "access_programs",
    "conversation",
    "prompt",
    "stream_options",
)


def _extra_values() -> st.SearchStrategy[Any]:
    """Plausible values of the fields above (right shapes, some with wrong leaves)."""
    return st.sampled_from(
        (
            {"x-codex-installation-id": "abc"},
            "24h",
            {"mode": "explicit", "ttl": "12h", "prewarm": False},
            {"prewarm": True},
            {"completion_window": "2h", "continuation_id": "c"},
            [{"type": "compaction", "compact_threshold": 1000}],
            {"context_compression": "auto"},
            {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}}},
            {"cyber": "standard"},
            "conv_1",
            {"id": "pmpt_1", "variables": {"a": "b"}},
            {"include_obfuscation": False},
            {"include_obfuscation": "no"},
            {"unknown": 1},
        )
    )


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text())


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=12),
    )


def hostile() -> st.SearchStrategy[Any]:
    """Any JSON-ish value, nested a little, or (rarely) nested far too deep."""
    nested = st.recursive(
        scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=6), children, max_size=3),
        ),
        max_leaves=8,
    )
    deep = st.integers(min_value=60, max_value=1200).map(lambda n: json.loads("[" * n + "]" * n))
    return st.one_of(nested, nested, nested, deep)


class SchemaStrategies:
    """``for_schema(schema)``: values for a JSON Schema of the spec document, with hostile swaps."""

    def __init__(self, spec: dict[str, Any], hostile_rate: int = 8) -> None:
        self.spec = spec
        self.hostile_rate = hostile_rate  # one node in about this many is replaced
        self._refs: dict[str, st.SearchStrategy[Any]] = {}

    def resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def for_schema(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        faithful = self._faithful(schema, depth)
        swap = st.integers(min_value=0, max_value=self.hostile_rate - 1)
        return swap.flatmap(lambda n: hostile() if n == 0 else faithful)

    def _faithful(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref not in self._refs:
                # Recursive schemas: defer, and stop descending past a few levels.
                self._refs[ref] = st.deferred(
                    lambda: self.for_schema(self.resolve(ref), depth + 1) if depth < 6 else scalars()
                )
            return self._refs[ref]
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.for_schema(option, depth + 1) for option in schema[key]])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            items = schema.get("items") or {}
            return st.lists(self.for_schema(items, depth + 1), max_size=3)
        if kind == "string":
            return st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_STRINGS))
        if kind == "integer":
            return st.integers(min_value=-5, max_value=2**40)
        if kind == "number":
            return st.floats(min_value=-3, max_value=3) | st.integers(min_value=-3, max_value=3)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return scalars()

    def _object(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        if not properties:
            return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
        fixed = {
            name: self.for_schema(properties[name], depth + 1) for name in required if name in properties
        }
        optional = {
            name: self.for_schema(sub, depth + 1) for name, sub in properties.items() if name not in required
        }
        return st.fixed_dictionaries(fixed, optional=optional)


def create_bodies(
    spec: dict[str, Any] | None = None, component: str = "CreateResponseBody"
) -> st.SearchStrategy[str]:
    """Raw request bodies (text) for ``component``; valid-looking ones mostly name a mock model."""
    spec = spec or load_spec()
    strategies = SchemaStrategies(spec)
    bodies = strategies.for_schema(spec["components"]["schemas"][component])

    def with_model(body: Any, model: str | None) -> Any:
        if isinstance(body, dict) and model is not None:
            body = {**body, "model": model}
        return body

    # OpenAI's create fields beyond the spec document (client_metadata, prompt_cache_options…):
    # now and then one of them, with a value of the right shape or a hostile one.
    extras = st.dictionaries(st.sampled_from(OPENAI_EXTRA_FIELDS), hostile() | _extra_values(), max_size=2)

    def with_extras(body: Any, extra: dict[str, Any]) -> Any:
        return {**extra, **body} if isinstance(body, dict) and component == "CreateResponseBody" else body

    bodies = st.builds(with_extras, bodies, extras)
    shaped = st.builds(with_model, bodies, st.sampled_from((*MOCK_MODELS, None)))
    encoded = shaped.map(lambda body: json.dumps(body, allow_nan=True))
    raw = st.sampled_from(
        (
            '{"model": "mock-1", "input": "x", "temperature": NaN}',
            '{"model": "mock-1", "input": "\\ud800"}',
            '{"model": "mock-1", "input": [' + "[" * 1000 + "]" * 1000 + "]}",
            '{"model": "mock-1", "input": "x", "max_output_tokens": ' + "9" * 5000 + "}",
            '{"model": "mock-1", "input": "x"',
        )
    )
    return st.one_of(encoded, encoded, encoded, raw)
