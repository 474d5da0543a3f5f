"""Prices per model and the cost of a response's usage.

Prices are US dollars per million tokens, looked up by shell-style glob on the requested model:
the config file's ``"prices"`` first, then ``OPENRESPONSES["PRICES"]``, then :data:`DEFAULT_PRICES`
(first match wins, so put specific globs before broad ones). A price has ``input``, ``output``
and optionally ``cached_input`` (cache reads; default: ``input``) and ``reasoning`` (default:
``output``; reasoning tokens are part of the output tokens). A model with no price costs 0.

The defaults are list prices when this table was last updated; providers change them, so check
and override them in the config file rather than editing this module.
"""

from __future__ import annotations

import fnmatch
import logging
from decimal import Decimal
from typing import Any

from responses_app.conf import openresponses_settings

logger = logging.getLogger(__name__)
MILLION = Decimal(1_000_000)

#: (glob, input, cached_input, output) in USD per million tokens. Specific globs first.
DEFAULT_PRICES: list[tuple[str, float, float, float]] = [
    ("gpt-5-nano*", 0.05, 0.005, 0.40),
    ("gpt-5-mini*", 0.25, 0.025, 2.00),
    ("gpt-5*", 1.25, 0.125, 10.00),
    ("gpt-4.1-nano*", 0.10, 0.025, 0.40),
    ("gpt-4.1-mini*", 0.40, 0.10, 1.60),
    ("gpt-4.1*", 2.00, 0.50, 8.00),
    ("gpt-4o-mini*", 0.15, 0.075, 0.60),
    ("gpt-4o*", 2.50, 1.25, 10.00),
    ("o4-mini*", 1.10, 0.275, 4.40),
    ("o3-mini*", 1.10, 0.55, 4.40),
    ("o3*", 2.00, 0.50, 8.00),
    ("o1-mini*", 1.10, 0.55, 4.40),
    ("o1*", 15.00, 7.50, 60.00),
    ("claude-opus-4-5*", 5.00, 0.50, 25.00),
    ("claude-opus-4-6*", 5.00, 0.50, 25.00),
    ("claude-opus-4*", 15.00, 1.50, 75.00),
    ("claude-sonnet-4*", 3.00, 0.30, 15.00),
    ("claude-3-7-sonnet*", 3.00, 0.30, 15.00),
    ("claude-haiku-4*", 1.00, 0.10, 5.00),
    ("claude-3-5-haiku*", 0.80, 0.08, 4.00),
    ("gemini-2.5-pro*", 1.25, 0.31, 10.00),
    ("gemini-2.5-flash-lite*", 0.10, 0.025, 0.40),
    ("gemini-2.5-flash*", 0.30, 0.075, 2.50),
    ("gemini-2.0-flash*", 0.10, 0.025, 0.40),
    ("glm-4.6*", 0.60, 0.11, 2.20),
    ("glm-4.5-air*", 0.20, 0.03, 1.10),
    ("glm-4.5*", 0.60, 0.11, 2.20),
]


def _config_prices() -> Any:
    """The config file's ``"prices"`` as read (None without a config file)."""
    if not openresponses_settings.CONFIG_FILE:
        return None
    from responses_app.gateway.keys import config_file_data_or_none

    return (config_file_data_or_none() or {}).get("prices")


def _pairs(value: Any) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items() if isinstance(v, dict)]
    if isinstance(value, list):  # [{"pattern": "gpt-*", "input": 1, ...}]
        return [(str(v["pattern"]), v) for v in value if isinstance(v, dict) and v.get("pattern")]
    return []


#: Prices found by model, with the declarations they were found in (the config file's prices and
#: the settings', the same objects while they do not change): a finish looked each model up
#: against every glob, ~27 ``fnmatch`` calls (~20 µs). Bounded: clients choose model names.
_found: dict[str, tuple[Any, Any, dict[str, Decimal] | None]] = {}
FOUND_MAX = 1024


def price_for(model: str) -> dict[str, Decimal] | None:
    """The price of ``model`` (per million tokens), or None when no glob matches."""
    config, settings = _config_prices(), openresponses_settings.PRICES
    hit = _found.get(model)
    if hit is not None and hit[0] is config and hit[1] is settings:
        found = hit[2]
    else:
        found = _lookup(model, _pairs(config) + _pairs(settings))
        if len(_found) >= FOUND_MAX:
            _found.clear()
        _found[model] = (config, settings, found)
    return None if found is None else dict(found)


def _lookup(model: str, declared: list[tuple[str, dict[str, Any]]]) -> dict[str, Decimal] | None:
    for pattern, price in declared:
        if fnmatch.fnmatchcase(model, pattern):
            return _normalise(price)
    for pattern, input_price, cached, output in DEFAULT_PRICES:
        if fnmatch.fnmatchcase(model, pattern):
            return _normalise({"input": input_price, "cached_input": cached, "output": output})
    return None


def _normalise(price: dict[str, Any]) -> dict[str, Decimal]:
    def number(name: str, default: Decimal) -> Decimal:
        value = price.get(name)
        return default if value is None else Decimal(str(value))

    input_price = number("input", Decimal(0))
    output = number("output", Decimal(0))
    return {
        "input": input_price,
        "cached_input": number("cached_input", input_price),
        "output": output,
        "reasoning": number("reasoning", output),
    }


def tokens_of(usage: dict[str, Any] | None) -> dict[str, int]:
    """Input, cached, output and reasoning tokens of a stored ``usage`` object (zeros when absent)."""
    usage = usage or {}

    def as_int(value: Any) -> int:
        try:
            return max(0, int(value or 0))
        except (TypeError, ValueError):
            return 0

    return {
        "input": as_int(usage.get("input_tokens")),
        "cached": as_int((usage.get("input_tokens_details") or {}).get("cached_tokens")),
        "output": as_int(usage.get("output_tokens")),
        "reasoning": as_int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")),
    }


def cost_of(model: str, usage: dict[str, Any] | None) -> Decimal:
    """US dollars for ``usage``: uncached input, cached input, non-reasoning and reasoning output."""
    price = price_for(model)
    if price is None:
        return Decimal(0)
    tokens = tokens_of(usage)
    cached = min(tokens["cached"], tokens["input"])
    reasoning = min(tokens["reasoning"], tokens["output"])
    total = (
        (tokens["input"] - cached) * price["input"]
        + cached * price["cached_input"]
        + (tokens["output"] - reasoning) * price["output"]
        + reasoning * price["reasoning"]
    )
    return (total / MILLION).quantize(Decimal("0.00000001"))
