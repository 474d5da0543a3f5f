"""Prometheus metrics at ``/metrics`` (text exposition format 0.0.4).

Counters and histograms are recorded once per response, at its terminal state (one Redis pipeline,
no work per streamed delta), so in the production topology every web and worker process adds to
the same Redis hash and any process can serve the totals. Without Redis they live in this process
(the embedded default runs its loops here). Gauges (active responses and streams, queue depth) are
read when scraped, from the database and the Celery broker.

The endpoint answers a request carrying ``Authorization: Bearer <OPENRESPONSES["METRICS_TOKEN"]>``
or the session of a staff user with the ``responses_app.view_metrics`` permission (superusers
have it); anything else gets 403 (404 would hide it, but Prometheus reports a
403 more clearly).
"""

from __future__ import annotations

import hmac
import logging
import math
import sys
import threading
from collections import defaultdict
from typing import Any

from django.http import HttpRequest, HttpResponse

from responses_app.conf import openresponses_settings
from responses_app.gateway.shared_state import key_prefix, sync_redis

logger = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEP = "\t"
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
METRICS_PERMISSION = "view_metrics"
UPSTREAM_CODES = {"rate_limit_exceeded", "model_not_found", "upstream_invalid_request"}

#: Longest label value; the API refuses longer model names (a 400 naming ``model``).
MAX_LABEL_CHARS = 200
OTHER = "other"

_lock = threading.Lock()
_local: dict[str, float] = defaultdict(float)
#: Free-form label values admitted so far, by kind ("model", "code"): bounded by METRICS_MAX_LABELS.
_admitted: dict[str, set[str]] = defaultdict(set)

# Admit ARGV[1] into the set KEYS[1] unless it already holds ARGV[2] members: 1 when admitted.
_ADMIT_LABEL = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""


# Add to several counters of the hash KEYS[1]: ARGV holds (field, 'i' or 'f', amount) triples.
# One command instead of one HINCRBY per counter (fewer replies to parse, one for Redis to run).
_INCREMENT = """
for i = 1, #ARGV, 3 do
  if ARGV[i + 1] == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 2])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return #ARGV / 3
"""


def _hash_key() -> str:
    return f"{key_prefix()}:metrics"


def _add(increments: dict[str, float]) -> None:
    """Add to several counters at once (one round trip)."""
    client = sync_redis()
    if client is None:
        add_local(increments)
        return
    try:
        pipe = client.pipeline(transaction=False)
        queue_increments(pipe, increments)
        pipe.execute()
    except Exception:  # noqa: BLE001 - metrics never break a response
        logger.warning("could not record metrics", exc_info=True)


def add_local(increments: dict[str, float]) -> None:
    """Add to the counters of this process (no Redis)."""
    with _lock:
        for field, value in increments.items():
            _local[field] += value


def queue_increments(pipe: Any, increments: dict[str, float]) -> None:
    """Queue the command that adds ``increments`` on a Redis pipeline (sync or asyncio)."""
    if not increments:
        return
    args: list[Any] = []
    for field, value in increments.items():
        if float(value).is_integer():
            args += (field, "i", int(value))
        else:
            args += (field, "f", repr(float(value)))
    pipe.eval(_INCREMENT, 1, _hash_key(), *args)


def _max_labels() -> int:
    try:
        return max(0, int(openresponses_settings.METRICS_MAX_LABELS))
    except (TypeError, ValueError):
        return 100


def _plain(value: str) -> bool:
    return 0 < len(value) <= MAX_LABEL_CHARS and value.isprintable()


def _bounded(kind: str, value: str) -> str:
    """``value`` if it is one of the first ``METRICS_MAX_LABELS`` of its kind ever seen, else 'other'.

    The set is shared through Redis when there is one, so every process agrees on it.
    """
    if value in _admitted[kind]:
        return value
    cap = _max_labels()
    client = sync_redis()
    if client is None:
        with _lock:
            if len(_admitted[kind]) >= cap:
                return OTHER
            _admitted[kind].add(value)
        return value
    try:
        ok = client.eval(_ADMIT_LABEL, 1, f"{_hash_key()}:labels:{kind}", value, cap)
    except Exception:  # noqa: BLE001 - metrics never break a response
        logger.warning("could not admit a metrics label", exc_info=True)
        return OTHER
    if not int(ok):
        return OTHER
    with _lock:
        if len(_admitted[kind]) < cap:
            _admitted[kind].add(value)
    return value


#: The routes :func:`_routed_models` last read, and the names it found in them.
_routed: tuple[Any, frozenset[str]] = (None, frozenset())


def _routed_models() -> frozenset[str]:
    """Model names the routes spell out (exact patterns, upstream and fallback models): bounded.
    Found again only when the routes are loaded again (every finish asks)."""
    global _routed
    from providers_app.registry import loaded_routes

    routes = loaded_routes()
    known, names = _routed
    if known is routes:
        return names
    found: set[str] = set()
    for route in routes:
        if not any(c in route.pattern for c in "*?["):
            found.add(route.pattern)
        found.update(m for m in (route.upstream_model, *(m for _, m in route.fallbacks)) if m)
    _routed = (routes, frozenset(found))
    return _routed[1]


def model_label(model: str) -> str:
    """The ``model`` label: a routed name, one of the first ``METRICS_MAX_LABELS`` others, or 'other'.

    A client chooses the model name (any name matching a route glob is served), so it never
    becomes a label unchecked: too long, control characters, or beyond the cap, it is 'other'.
    """
    model = str(model or "")
    if not _plain(model):
        return OTHER
    try:
        if model in _routed_models():
            return model
    except Exception:  # noqa: BLE001 - the registry is away: fall back to the bounded set
        logger.debug("metrics: routes unavailable", exc_info=True)
    return _bounded("model", model)


def code_label(code: str) -> str:
    """An upstream error code (providers choose them): bounded like model names."""
    code = str(code or "upstream_error")
    if not _plain(code) or len(code) > 64:
        return OTHER
    return _bounded("code", code)


def _field(*parts: Any) -> str:
    return SEP.join(str(p).replace(SEP, " ") for p in parts)


def _bucket(value: float, buckets: tuple[float, ...]) -> str:
    for bound in buckets:
        if value <= bound:
            return repr(bound)
    return "+Inf"


def is_upstream_error(error: dict[str, Any] | None) -> bool:
    code = str((error or {}).get("code") or "")
    return code.startswith("upstream") or code in UPSTREAM_CODES


def record_response(
    *,
    model: str,
    provider: str,
    status: str,
    tokens: dict[str, int],
    cost: float,
    iterations: int,
    first_token_seconds: float | None,
    total_seconds: float | None,
    error: dict[str, Any] | None,
    pipeline: Any = None,
) -> None:
    """Everything one finished response adds to the counters (labels from bounded sets only).

    ``pipeline``: a Redis pipeline (sync or asyncio) the caller executes, with other commands
    of the same round trip; without it the counters are added at once.
    """
    increments = response_increments(
        model=model,
        provider=provider,
        status=status,
        tokens=tokens,
        cost=cost,
        iterations=iterations,
        first_token_seconds=first_token_seconds,
        total_seconds=total_seconds,
        error=error,
    )
    if pipeline is not None:
        queue_increments(pipeline, increments)
    else:
        _add(increments)


def response_increments(
    *,
    model: str,
    provider: str,
    status: str,
    tokens: dict[str, int],
    cost: float,
    iterations: int,
    first_token_seconds: float | None,
    total_seconds: float | None,
    error: dict[str, Any] | None,
) -> dict[str, float]:
    """The counters one finished response adds to, and by how much (see :func:`record_response`)."""
    model = model_label(model)
    inc: dict[str, float] = {
        _field("r", model, provider, status): 1,
        _field("it", model, provider): iterations,
    }
    for kind, count in tokens.items():
        if count:
            inc[_field("tok", model, provider, kind)] = count
    if cost:
        inc[_field("cost", model, provider)] = cost
    for name, value, buckets in (
        ("ttft", first_token_seconds, TTFT_BUCKETS),
        ("dur", total_seconds, DURATION_BUCKETS),
    ):
        if value is not None and value >= 0:
            inc[_field(name, model, provider, _bucket(value, buckets))] = 1
            inc[_field(name + "_sum", model, provider)] = value
    if status == "failed" and is_upstream_error(error):
        inc[_field("uerr", provider, code_label((error or {}).get("code") or "upstream_error"))] = 1
    return inc


def record_upstream_error(*, provider: str, code: str) -> None:
    """A provider failed (also one that a fallback then replaced)."""
    _add({_field("uerr", provider, code_label(code or "upstream_error")): 1})


def record_rejection(*, reason: str) -> None:
    """A request refused by a limit (429)."""
    _add({_field("rej", reason): 1})


def record_config_error() -> None:
    """The config file turned unusable (invalid, deleted): counted once per distinct error."""
    _add({_field("cfgerr"): 1})


def record_takeover(*, outcome: str) -> None:
    """A lost loop taken over by another worker (``resumed``) or failed after too many (``failed``)."""
    _add({_field("tko", outcome): 1})


def snapshot() -> dict[str, float]:
    client = sync_redis()
    if client is None:
        with _lock:
            return dict(_local)
    raw = client.hgetall(_hash_key())
    return {k.decode(): float(v) for k, v in raw.items()}


def reset_local() -> None:
    with _lock:
        _local.clear()
        _admitted.clear()


# --------------------------------------------------------------------------- exposition


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: Any) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: Any) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _histogram(
    out: _Writer, name: str, help_text: str, data: dict[str, float], prefix: str, buckets: tuple[float, ...]
) -> None:
    out.family(name, "histogram", help_text)
    series: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for field, value in data.items():
        parts = field.split(SEP)
        if parts[0] == prefix and len(parts) == 4:
            series[(parts[1], parts[2])][parts[3]] = value
        elif parts[0] == prefix + "_sum" and len(parts) == 3:
            sums[(parts[1], parts[2])] += value
    for (model, provider), counts in sorted(series.items()):
        cumulative = 0.0
        for bound in (*[repr(b) for b in buckets], "+Inf"):
            cumulative += counts.get(bound, 0.0)
            out.sample(f"{name}_bucket", cumulative, model=model, provider=provider, le=bound)
        out.sample(f"{name}_sum", sums[(model, provider)], model=model, provider=provider)
        out.sample(f"{name}_count", cumulative, model=model, provider=provider)


def _counter(
    out: _Writer, name: str, help_text: str, data: dict[str, float], prefix: str, label_names: tuple[str, ...]
) -> None:
    out.family(name + "_total", "counter", help_text)
    rows = []
    for field, value in data.items():
        parts = field.split(SEP)
        if parts[0] == prefix and len(parts) == len(label_names) + 1:
            rows.append((tuple(parts[1:]), value))
    for values, value in sorted(rows):
        out.sample(name + "_total", value, **dict(zip(label_names, values, strict=True)))


def _gauges(out: _Writer) -> None:
    from responses_app.models import UNFINISHED, Response

    counts = dict.fromkeys(("queued", "in_progress"), 0)
    streams = 0
    try:
        for status, stream, number in _count_unfinished(Response, UNFINISHED):
            counts[status] = counts.get(status, 0) + number
            if stream:
                streams += number
    except Exception:  # noqa: BLE001 - a scrape still answers without the database
        logger.warning("metrics: could not count unfinished responses", exc_info=True)
    out.family("openresponses_active_responses", "gauge", "Responses not finished yet, by status.")
    for status, number in counts.items():
        out.sample("openresponses_active_responses", number, status=status)
    out.family(
        "openresponses_active_streams",
        "gauge",
        "Unfinished responses streamed to a client (SSE or WebSocket).",
    )
    out.sample("openresponses_active_streams", streams)
    out.family(
        "openresponses_queue_depth",
        "gauge",
        "Loops waiting for a worker: the Celery queue length (production) or queued responses.",
    )
    depth, queue = _queue_depth(counts["queued"])
    out.sample("openresponses_queue_depth", depth, queue=queue)
    from responses_app.gateway.keys import config_file_error

    problem = config_file_error()
    out.family(
        "openresponses_config_file_ok",
        "gauge",
        "0 while the config file is unusable (this process serves its last good version, or refuses requests).",
    )
    out.sample("openresponses_config_file_ok", 0 if problem else 1)
    implementation = serving_loop_implementation()
    if implementation:
        out.family(
            "openresponses_event_loop_info",
            "gauge",
            "The event loop this web process serves on: uvloop or asyncio (OPENRESPONSES_UVLOOP=0).",
        )
        out.sample("openresponses_event_loop_info", 1, implementation=implementation)


def serving_loop_implementation() -> str | None:
    """``uvloop`` or ``asyncio``: the loop of the Twisted reactor daphne serves on (None elsewhere).

    daphne reads the reactor's loop the same way (``reactor._asyncioEventloop``) to run the site.
    """
    reactor = sys.modules.get("twisted.internet.reactor")
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        return None
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def _count_unfinished(model: Any, unfinished: list[str]) -> list[tuple[str, bool, int]]:
    from django.db.models import Count

    rows = (
        model.objects.filter(status__in=unfinished)
        .order_by()
        .values("status", "stream")
        .annotate(n=Count("id"))
        .values_list("status", "stream", "n")
    )
    return [(status, bool(stream), n) for status, stream, n in rows]


def _queue_depth(queued: int) -> tuple[int, str]:
    if str(openresponses_settings.DISPATCH) != "celery":
        return queued, "inline"
    from django.conf import settings

    queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    broker = getattr(settings, "CELERY_BROKER_URL", "") or ""
    if not broker.startswith(("redis://", "rediss://", "unix://")):
        return queued, queue
    try:
        import redis

        client = redis.Redis.from_url(broker, socket_timeout=2, socket_connect_timeout=2)
        try:
            return int(client.llen(queue)), queue
        finally:
            client.close()
    except Exception:  # noqa: BLE001
        logger.warning("metrics: could not read the Celery queue length", exc_info=True)
        return queued, queue


def exposition() -> str:
    """The whole text exposition."""
    data = snapshot()
    out = _Writer()
    _counter(
        out,
        "openresponses_responses",
        "Finished responses by model, provider and final status.",
        data,
        "r",
        ("model", "provider", "status"),
    )
    _counter(
        out,
        "openresponses_tokens",
        "Tokens used by model, provider and kind (input, cached, output, reasoning).",
        data,
        "tok",
        ("model", "provider", "kind"),
    )
    _counter(
        out,
        "openresponses_cost_usd",
        "Cost in US dollars from the price table, by model and provider.",
        data,
        "cost",
        ("model", "provider"),
    )
    _counter(
        out,
        "openresponses_loop_iterations",
        "Model samples taken by the agentic loop, by model and provider.",
        data,
        "it",
        ("model", "provider"),
    )
    _counter(
        out,
        "openresponses_upstream_errors",
        "Provider failures by provider and error code (fallbacks included).",
        data,
        "uerr",
        ("provider", "code"),
    )
    _counter(
        out,
        "openresponses_rejected_requests",
        "Requests refused by a limit (429), by reason.",
        data,
        "rej",
        ("reason",),
    )
    _counter(
        out,
        "openresponses_config_file_errors",
        "Times the config file was found unusable (invalid or missing); its last good version is kept.",
        data,
        "cfgerr",
        (),
    )
    _counter(
        out,
        "openresponses_takeovers",
        "Loops whose worker was lost: taken over by another worker (resumed) or failed after too many.",
        data,
        "tko",
        ("outcome",),
    )
    _histogram(
        out,
        "openresponses_time_to_first_token_seconds",
        "Seconds from creation to the first output.",
        data,
        "ttft",
        TTFT_BUCKETS,
    )
    _histogram(
        out,
        "openresponses_response_duration_seconds",
        "Seconds from creation to the terminal state.",
        data,
        "dur",
        DURATION_BUCKETS,
    )
    _gauges(out)
    return out.text()


def allowed(request: HttpRequest) -> bool:
    token = str(openresponses_settings.METRICS_TOKEN or "")
    header = request.headers.get("Authorization") or ""
    if (
        token
        and header.lower().startswith("bearer ")
        and hmac.compare_digest(header[7:].strip().encode(), token.encode())
    ):
        return True
    user = getattr(request, "user", None)
    # Superusers have every permission; other staff need this one (staff alone is not enough).
    return bool(
        user is not None
        and user.is_active
        and user.is_staff
        and user.has_perm(f"responses_app.{METRICS_PERMISSION}")
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the Prometheus exposition, for the metrics token or ``view_metrics``."""
    if request.method not in {"GET", "HEAD"}:
        return HttpResponse(
            "Method not allowed\n", status=405, content_type="text/plain", headers={"Allow": "GET, HEAD"}
        )
    if not allowed(request):
        return HttpResponse(
            "Forbidden: send 'Authorization: Bearer <METRICS_TOKEN>'\n", status=403, content_type="text/plain"
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
