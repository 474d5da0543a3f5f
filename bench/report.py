"""The issue's targets checked against one run's figures, and the table printed by ``make bench``."""

from __future__ import annotations

from typing import Any


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


def _fmt_kinds(kinds: dict[str, float | None] | None) -> str:
    """``web 38.7, worker 41.0``: the processes that hold something per stream."""
    return ", ".join(f"{kind} {kib}" for kind, kib in (kinds or {}).items() if kib) or "-"


def _le(value: Any, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ge(value: Any, limit: float) -> bool | None:
    return None if value is None else value >= limit


def _all(*checks: bool | None) -> bool | None:
    known = [c for c in checks if c is not None]
    if not known:
        return None
    return all(known)


def _vs_litellm(target: str, compared: bool) -> str:
    """The target's text; in parentheses (reported, not judged) when LiteLLM was not run."""
    return target if compared else f"({target}: LiteLLM not compared)"


def evaluate(topology: str, shapes: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target of the issue: the figures, the ratios and whether it is met.

    A target is judged on the figures that were measured: without ``--compare litellm`` a row whose
    only target is a ratio to LiteLLM is reported, not judged.
    """
    rows: list[dict[str, Any]] = []
    instant = shapes.get("instant") or {}
    if instant:
        ours_s, lite_s = _get(instant, "ours", "stream") or {}, _get(instant, "litellm", "stream") or {}
        ours_j, lite_j = _get(instant, "ours", "json") or {}, _get(instant, "litellm", "json") or {}
        compared = bool(lite_s)
        r = _ratio(ours_s.get("added_p50_ms"), lite_s.get("added_p50_ms"))
        rows.append(
            {
                "figure": "added TTFT p50 / p99, c=1 (ms)",
                "ours": f"{ours_s.get('added_p50_ms')} / {ours_s.get('added_p99_ms')}",
                "direct": f"{_get(instant, 'direct', 'stream', 'p50_ms')} (ttft p50)",
                "litellm": f"{lite_s.get('added_p50_ms')} / {lite_s.get('added_p99_ms')}" if lite_s else "-",
                "ours_vs_litellm": r,
                "target": "p50 <=5, <=0.5x LiteLLM",
                "met": _all(_le(ours_s.get("added_p50_ms"), 5), _le(r, 0.5)),
            }
        )
        r = _ratio(ours_j.get("added_p50_ms"), lite_j.get("added_p50_ms"))
        rows.append(
            {
                "figure": "added latency p50 non-streamed, c=1 (ms)",
                "ours": ours_j.get("added_p50_ms"),
                "direct": f"{_get(instant, 'direct', 'json', 'p50_ms')} (total p50)",
                "litellm": lite_j.get("added_p50_ms") if lite_j else "-",
                "ours_vs_litellm": r,
                "target": _vs_litellm("<=0.5x LiteLLM", compared),
                "met": _le(r, 0.5) if compared else None,
            }
        )
        # All processes: the gateway's (web, worker, beat) and the PostgreSQL backends serving it.
        cpu = ours_s.get("cpu_ms_per_request")
        db = ours_s.get("db_cpu_ms_per_request")
        total = None if cpu is None else round(cpu + (db or 0.0), 3)
        lite_cpu = lite_s.get("cpu_ms_per_request")
        r = _ratio(total, lite_cpu)
        rows.append(
            {
                "figure": "CPU per 20-delta stream, all processes (ms)",
                "ours": total if db is None else f"{total} ({cpu} + db {db})",
                "direct": f"{_get(instant, 'direct', 'stream', 'cpu_ms_per_request')} (upstream)",
                "litellm": lite_cpu if lite_s else "-",
                "ours_vs_litellm": r,
                "target": _vs_litellm("<=0.5x LiteLLM", compared),
                "met": _le(r, 0.5) if compared else None,
            }
        )
        rows.append(
            {
                "figure": "CPU per non-streamed request (ms)",
                "ours": ours_j.get("cpu_ms_per_request"),
                "direct": f"{_get(instant, 'direct', 'json', 'cpu_ms_per_request')} (upstream)",
                "litellm": lite_j.get("cpu_ms_per_request") if lite_j else "-",
                "ours_vs_litellm": _ratio(ours_j.get("cpu_ms_per_request"), lite_j.get("cpu_ms_per_request")),
                "target": "(reported)",
                "met": None,
            }
        )
    paced = shapes.get("paced") or {}
    levels = sorted(int(k[1:]) for k in paced if k.startswith("c") and k[1:].isdigit())
    if levels:
        low = 50 if 50 in levels else levels[0]
        processes = shapes.get("worker_processes")
        for level in sorted({low, levels[-1]}):
            ours, direct, lite = (
                _get(paced, f"c{level}", n, "streams_per_s") for n in ("ours", "direct", "litellm")
            )
            rd = _ratio(ours, direct)
            with_n = f", {processes} worker processes" if processes and level == levels[-1] else ""
            rows.append(
                {
                    "figure": f"paced throughput, c={level}{with_n} (streams/s)",
                    "ours": ours,
                    "direct": direct,
                    "litellm": lite if lite is not None else "-",
                    "ours_vs_direct": rd,
                    "ours_vs_litellm": _ratio(ours, lite),
                    "target": ">=0.9x direct",
                    "met": _ge(rd, 0.9),
                }
            )
        ours, direct, lite = (_get(paced, f"c{low}", n, "ttft_p50_ms") for n in ("ours", "direct", "litellm"))
        rd = _ratio(ours, direct)
        rows.append(
            {
                "figure": f"paced TTFT p50, c={low} (ms)",
                "ours": ours,
                "direct": direct,
                "litellm": lite if lite is not None else "-",
                "ours_vs_direct": rd,
                "ours_vs_litellm": _ratio(ours, lite),
                "target": "<=1.1x direct",
                "met": _le(rd, 1.1),
            }
        )
        scaling = paced.get("scaling")
        if scaling:
            rows.append(
                {
                    "figure": f"paced c={scaling.get('concurrency')}: 1 -> {scaling.get('worker_processes')} worker processes (streams/s)",
                    "ours": f"{scaling.get('one_process_streams_per_s')} -> {scaling.get('n_processes_streams_per_s')} ({scaling.get('factor')}x)",
                    "direct": _get(paced, f"c{scaling.get('concurrency')}", "direct", "streams_per_s"),
                    "litellm": "-",
                    "target": "(scaling factor stated)",
                    "met": None,
                }
            )
    long = shapes.get("long") or {}
    counts = sorted(int(k[1:]) for k in long if k.startswith("n") and k[1:].isdigit())
    if counts:
        top = f"n{counts[-1]}"
        ours = _get(long, top, "ours") or {}
        if topology != "production":
            target, met = "(embedded: not required)", None
        elif counts[-1] < 2000:
            target, met = "(2,000 not run)", None
        else:
            target, met = "2,000: all complete, in order, no gap >10x upstream", bool(ours.get("held_ok"))
        gap_limit = 10 * (_get(long, "upstream", "gap_ms") or 0)
        rows.append(
            {
                "figure": f"{counts[-1]} open streams: complete, every token in order, gap <= {gap_limit:g} ms",
                "ours": f"{ours.get('complete')}/{ours.get('clients')} complete ({ours.get('held_at_once')} open at once), max gap {ours.get('max_gap_ms')} ms, {ours.get('streams_over_gap_limit')} over",
                "direct": _fmt_hold(_get(long, top, "direct")),
                "litellm": _fmt_hold(
                    next(
                        (
                            _get(long, f"n{n}", "litellm")
                            for n in reversed(counts)
                            if _get(long, f"n{n}", "litellm")
                        ),
                        None,
                    )
                ),
                "target": target,
                "met": met,
            }
        )
        kib = ours.get("rss_kib_per_stream")
        rows.append(
            {
                "figure": f"memory per open stream at {counts[-1]}, peak under this load (KiB)",
                "ours": kib,
                "direct": "-",
                "litellm": _get(long, top, "litellm", "rss_kib_per_stream") or "-",
                "target": "<=64",
                "met": _le(kib, 64),
            }
        )
    opened = long.get("open") or {}
    if opened.get("ours"):
        pace = opened.get("upstream") or {}
        kib = opened["ours"].get("rss_kib_per_stream_steady")
        lite = opened.get("litellm") or {}
        rows.append(
            {
                "figure": f"memory per open stream, {opened['ours'].get('clients')} streams of {1000 / (pace.get('gap_ms') or 1000):g} tokens/s, while all are open (KiB)",
                "ours": f"{kib} ({_fmt_kinds(opened['ours'].get('rss_kib_per_stream_steady_by_process'))}), {opened['ours'].get('complete')}/{opened['ours'].get('clients')} complete",
                "direct": "-",
                "litellm": f"{lite.get('rss_kib_per_stream_steady')} at {lite.get('clients')}"
                if lite
                else "-",
                "target": "<=64",
                "met": _le(kib, 64),
            }
        )
    agentic = shapes.get("agentic") or {}
    if agentic:
        rows.append(
            {
                "figure": "agentic, 3 upstream turns: p50 (ms) / CPU (ms)",
                "ours": _fmt_pair(agentic.get("ours")),
                "direct": _fmt_pair(agentic.get("direct")),
                "litellm": _fmt_pair(agentic.get("litellm")),
                "ours_vs_direct": _ratio(_get(agentic, "ours", "p50_ms"), _get(agentic, "direct", "p50_ms")),
                "ours_vs_litellm": _ratio(
                    _get(agentic, "ours", "p50_ms"), _get(agentic, "litellm", "p50_ms")
                ),
                "target": "(reported)",
                "met": None,
            }
        )
    store = shapes.get("store") or {}
    if store:
        rows.append(
            {
                "figure": "store true/false: json p50 (ms), CPU (ms)",
                "ours": f"{_get(store, 'json_store_true', 'p50_ms')}/{_get(store, 'json_store_false', 'p50_ms')}, {_get(store, 'json_store_true', 'cpu_ms_per_request')}/{_get(store, 'json_store_false', 'cpu_ms_per_request')}",
                "direct": "-",
                "litellm": "-",
                "target": "(reported)",
                "met": None,
            }
        )
    chain = shapes.get("chain") or {}
    if chain:
        depth = chain.get("depth")
        rows.append(
            {
                "figure": f"previous_response_id chain: depth 1 / {depth} p50 (ms)",
                "ours": f"{_get(chain, 'ours', 'depth1_p50_ms')} / {_get(chain, 'ours', f'depth{depth}_p50_ms')}",
                "direct": f"{_get(chain, 'direct', 'depth1_p50_ms')} / {_get(chain, 'direct', f'depth{depth}_p50_ms')} (resends history)",
                "litellm": "-",
                "target": "(reported)",
                "met": None,
            }
        )
    return rows


def _fmt_hold(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry.get('complete')}/{entry.get('clients')} complete, max gap {entry.get('max_gap_ms')} ms"


def _fmt_pair(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry.get('p50_ms')} / {entry.get('cpu_ms_per_response')}"


def table(topology: str, rows: list[dict[str, Any]]) -> str:
    header = ["figure", "ours", "direct", "litellm", "ours/direct", "ours/litellm", "target", "met"]
    body = [
        [
            str(r.get("figure")),
            str(r.get("ours")),
            str(r.get("direct")),
            str(r.get("litellm")),
            "-" if r.get("ours_vs_direct") is None else f"{r['ours_vs_direct']:.2f}x",
            "-" if r.get("ours_vs_litellm") is None else f"{r['ours_vs_litellm']:.2f}x",
            str(r.get("target")),
            {True: "yes", False: "NO", None: "-"}[r.get("met")],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [
        f"== {topology} ==",
        " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def breakdown_table(breakdown: dict[str, Any]) -> str:
    order = [
        "request_in",
        "parse",
        "db",
        "dispatch",
        "pickup",
        "upstream_first_token",
        "channel_hop",
        "sse_write",
    ]
    parts = ", ".join(f"{k} {breakdown.get(k)}" for k in order)
    return f"TTFT breakdown, p50 ms over {breakdown.get('samples')} streams (direct TTFT p50 {breakdown.get('direct_ttft_p50_ms')}): {parts}"
