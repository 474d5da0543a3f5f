"""The load shapes: each bounded in time and request count, each returning plain figures (a dict)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client import Connection, Result
from .procs import redis_cpu_seconds
from .targets import HOSTED_TOOL, OurServer, Target, Upstream
from .upstream import token

RESP_ID = re.compile(rb'"id":"(resp_[A-Za-z0-9_]+)"')
TIMING = re.compile(r'(\w+);(?:dur=([\d.]+)|desc="([^"]*)")')


@dataclass
class Sizes:
    """How much load each shape makes (the full run, or ``quick()`` for the smoke test)."""

    instant_tokens: int = 20
    instant_rounds: int = 150
    warmup: int = 15
    paced: tuple[float, int, float] = (100.0, 50, 20.0)  # ttft ms, tokens, gap ms
    paced_concurrency: tuple[int, ...] = (50, 200)
    paced_seconds: float = 8.0
    long: tuple[float, int, float] = (100.0, 500, 20.0)
    # The same count of streams at 2 tokens/s each (120 s; under the reader's 1 s silence check,
    # which would read the store at every token of a slower stream), opened at the rate the server
    # creates them — at most ``open_ramp_per_s``, and never more than ``open_pending`` still
    # waiting for their first token — so that no stream waits behind a backlog of creates: memory
    # per open stream, measured while every stream is open (``Bench.long``). Streams last longer
    # than the slowest ramp seen (~70 s on a slow 2-core machine) so that a window remains with all
    # of them open; a machine that cannot serve the tokens of them all has no such window (None).
    open: tuple[float, int, float] = (100.0, 240, 500.0)
    open_ramp_per_s: float = 100.0
    open_pending: int = 20
    long_clients: tuple[int, ...] = (1000, 2000)
    long_ramp_per_s: float = 1000.0
    long_timeout: float = 55.0
    agentic_rounds: int = 20
    store_rounds: int = 80
    chain_depth: int = 10
    chains: int = 5

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            instant_rounds=4,
            warmup=2,
            paced=(10.0, 10, 5.0),
            paced_concurrency=(4,),
            paced_seconds=1.0,
            long=(10.0, 30, 5.0),
            open=(10.0, 20, 150.0),
            open_ramp_per_s=200.0,
            open_pending=10,
            long_clients=(20,),
            long_ramp_per_s=200.0,
            long_timeout=20.0,
            agentic_rounds=2,
            store_rounds=2,
            chain_depth=3,
            chains=1,
        )


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def server_timing(header: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, dur, desc in TIMING.findall(header or ""):
        try:
            out[name] = float(dur) / 1000 if dur else float(desc)
        except ValueError:
            continue
    return out


class CpuMeter:
    """CPU seconds (and database-backend CPU) of one target's processes between two readings.

    ``detail``: also by process kind (web, worker, beat, supervisor) and the Redis server's own CPU
    (``INFO cpu``: every client of that Redis, so run the benchmark on a Redis of its own for it).
    """

    def __init__(self, target: Target, detail: bool = False) -> None:
        self.target = target
        self.detail = detail
        self.cpu = 0.0
        self.db = 0.0
        self.kinds: dict[str, float] = {}
        self.redis: float | None = None

    def read(self) -> tuple[float, float, dict[str, float], float | None]:
        t = self.target
        kinds = t.group.cpu_by_kind() if self.detail and t.group else {}
        url = t.meta.get("redis_url") if self.detail else None
        return (
            sum(kinds.values()) if kinds else (t.group.cpu_seconds() if t.group else 0.0),
            t.db_group.cpu_seconds() if t.db_group else 0.0,
            kinds,
            redis_cpu_seconds(url) if url else None,
        )

    def add(self, before: tuple, after: tuple) -> None:
        self.cpu += after[0] - before[0]
        self.db += after[1] - before[1]
        for kind, value in after[2].items():
            self.kinds[kind] = self.kinds.get(kind, 0.0) + value - before[2].get(kind, 0.0)
        if before[3] is not None and after[3] is not None:
            self.redis = (self.redis or 0.0) + after[3] - before[3]

    def per(self, count: int) -> dict[str, Any]:
        """Milliseconds per ``count`` (streams) by process kind, with db and redis when measured."""
        out = {kind: round(value * 1000 / max(1, count), 3) for kind, value in sorted(self.kinds.items())}
        if self.target.db_group:
            out["db"] = round(self.db * 1000 / max(1, count), 3)
        if self.redis is not None:
            out["redis"] = round(self.redis * 1000 / max(1, count), 3)
        return out


@dataclass
class Bench:
    upstream: Upstream
    targets: list[Target]
    sizes: Sizes
    ours: OurServer | None = None
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    async def configure(self, **shape: float) -> None:
        conn = Connection("127.0.0.1", self.upstream.port)
        result = await conn.request("POST", "/_config", json.dumps(shape).encode())
        conn.close()
        if not result.ok:
            raise RuntimeError(f"upstream /_config failed: {result.status} {result.error}")

    def freeze(self) -> None:
        for t in self.targets:
            if t.group:
                t.group.freeze()
            if t.db_group:
                t.db_group.freeze()

    # ------------------------------------------------------------------ helpers

    async def settle(self, t: Target, limit: float = 90.0) -> float:
        """Wait until the target's processes are idle again (loops left by dropped clients); the seconds it took."""
        if t.group is None:
            await asyncio.sleep(1.0)
            return 0.0
        t.group.thaw()
        start = time.perf_counter()
        last = t.group.cpu_seconds()
        while time.perf_counter() - start < limit:
            await asyncio.sleep(1.0)
            now = t.group.cpu_seconds()
            if now - last < 0.05:
                break
            last = now
        return round(time.perf_counter() - start, 1)

    @staticmethod
    def expected(tokens: int) -> list[str]:
        return [token(i) for i in range(tokens)]

    async def _warm(self, conns: dict[str, Connection], tokens: int) -> None:
        for _ in range(self.sizes.warmup):
            for t in self.targets:
                for stream in (False, True):
                    await conns[t.name].request(
                        "POST", t.path, t.body(stream=stream), marker=t.marker if stream else b""
                    )

    # ------------------------------------------------------------------ instant upstream, concurrency 1

    async def instant(self) -> dict[str, Any]:
        """Added latency (non-streamed) and added TTFT (streamed), interleaved rounds at concurrency 1."""
        tokens = self.sizes.instant_tokens
        await self.configure(ttft_ms=0, tokens=tokens, gap_ms=0)
        conns = {t.name: Connection("127.0.0.1", t.port) for t in self.targets}
        await self._warm(conns, tokens)
        self.freeze()
        results: dict[tuple[str, str], list[Result]] = {}
        meters = {(t.name, m): CpuMeter(t) for t in self.targets for m in ("json", "stream")}
        expected = self.expected(tokens)
        for r in range(self.sizes.instant_rounds):
            order = self.targets[r % len(self.targets) :] + self.targets[: r % len(self.targets)]
            for mode in ("json", "stream"):
                for t in order:
                    meter = meters[(t.name, mode)]
                    before = meter.read()
                    res = await conns[t.name].request(
                        "POST",
                        t.path,
                        t.body(stream=mode == "stream"),
                        marker=t.marker if mode == "stream" else b"",
                    )
                    await asyncio.sleep(0.002)  # let the server finish its bookkeeping inside this window
                    meter.add(before, meter.read())
                    results.setdefault((t.name, mode), []).append(res)
        for conn in conns.values():
            conn.close()
        out: dict[str, Any] = {"tokens": tokens, "rounds": self.sizes.instant_rounds}
        for t in self.targets:
            entry: dict[str, Any] = {}
            for mode in ("json", "stream"):
                rs = results[(t.name, mode)]
                ok = [r for r in rs if r.ok and (mode == "json" or r.tokens() == expected)]
                values = [r.total for r in ok] if mode == "json" else [r.ttft for r in ok]
                meter = meters[(t.name, mode)]
                entry[mode] = {
                    "requests": len(rs),
                    "errors": len(rs) - len(ok),
                    "p50_ms": ms(pct(values, 50)),
                    "p99_ms": ms(pct(values, 99)),
                    "total_p50_ms": ms(pct([r.total for r in ok], 50)),
                    "cpu_ms_per_request": round(meter.cpu * 1000 / max(1, len(rs)), 3),
                    "db_cpu_ms_per_request": round(meter.db * 1000 / max(1, len(rs)), 3)
                    if t.db_group
                    else None,
                }
                if mode == "stream":
                    entry[mode]["cpu_ms_per_delta"] = round(meter.cpu * 1000 / max(1, len(rs) * tokens), 4)
            out[t.name] = entry
        direct = out.get("direct")
        for t in self.targets:
            if t.name != "direct" and direct:
                for mode in ("json", "stream"):
                    a, b = out[t.name][mode]["p50_ms"], direct[mode]["p50_ms"]
                    c, d = out[t.name][mode]["p99_ms"], direct[mode]["p99_ms"]
                    out[t.name][mode]["added_p50_ms"] = None if a is None or b is None else round(a - b, 3)
                    out[t.name][mode]["added_p99_ms"] = None if c is None or d is None else round(c - d, 3)
        if self.ours is not None and self.target("ours"):
            out["breakdown"] = self._breakdown(
                results[("ours", "stream")], results.get(("direct", "stream"), [])
            )
        return out

    def _breakdown(self, rs: list[Result], direct: list[Result]) -> dict[str, Any]:
        """Where the added time to first token goes, from Server-Timing, stored timestamps and the client clock."""
        assert self.ours is not None
        parsed = []
        for r in rs:
            if not r.ok:
                continue
            match = RESP_ID.search(r.body)
            timing = server_timing(r.headers.get("server-timing", ""))
            if match and "t0" in timing:
                parsed.append((match.group(1).decode(), timing, r))
        rows = self.ours.stored_rows([p[0] for p in parsed])
        parts: dict[str, list[float]] = {
            k: []
            for k in (
                "request_in",
                "parse",
                "db",
                "dispatch",
                "pickup",
                "upstream_first_token",
                "channel_hop",
                "sse_write",
                "wait",
            )
        }
        for rid, timing, r in parsed:
            row = rows.get(rid)
            if row is None or row[1] is None or row[2] is None:
                continue
            t0 = timing["t0"]
            dispatched = t0 + timing.get("parse", 0) + timing.get("db", 0) + timing.get("dispatch", 0)
            received = dispatched + timing.get("wait", 0)
            parts["request_in"].append(t0 - r.start_wall)
            for key in ("parse", "db", "dispatch", "wait"):
                parts[key].append(timing.get(key, 0.0))
            parts["pickup"].append(row[1] - dispatched)
            parts["upstream_first_token"].append(row[2] - row[1])
            parts["channel_hop"].append(received - row[2])
            parts["sse_write"].append(r.first_wall - received)
        out = {key: ms(pct(values, 50)) for key, values in parts.items()}
        out["samples"] = len(parts["parse"])
        out["direct_ttft_p50_ms"] = ms(pct([r.ttft for r in direct if r.ok], 50))
        return out

    # ------------------------------------------------------------------ paced upstream, many streams

    async def closed_loop(
        self,
        t: Target,
        concurrency: int,
        seconds: float,
        body: bytes,
        *,
        marker: bytes,
        max_requests: int = 100000,
    ) -> tuple[list[Result], float]:
        results: list[Result] = []
        deadline = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            conn = Connection("127.0.0.1", t.port)
            await asyncio.sleep(
                0.2 * i / concurrency
            )  # a short ramp: connect storms only measure the listen backlog
            while time.perf_counter() < deadline and len(results) < max_requests:
                results.append(await conn.request("POST", t.path, body, marker=marker, timeout=seconds + 60))
            conn.close()

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return results, max([r.end for r in results] + [start]) - start

    async def paced(self) -> dict[str, Any]:
        """Streamed throughput and TTFT with a paced upstream at each concurrency."""
        ttft, tokens, gap = self.sizes.paced
        await self.configure(ttft_ms=ttft, tokens=tokens, gap_ms=gap)
        expected = self.expected(tokens)
        out: dict[str, Any] = {
            "upstream": {"ttft_ms": ttft, "tokens": tokens, "gap_ms": gap},
            "seconds": self.sizes.paced_seconds,
        }
        for concurrency in self.sizes.paced_concurrency:
            level: dict[str, Any] = {}
            for t in self.targets:
                if t.group:
                    t.group.thaw()
                meter = CpuMeter(t, detail=t.name == "ours")
                before = meter.read()
                rs, elapsed = await self.closed_loop(
                    t, concurrency, self.sizes.paced_seconds, t.body(stream=True), marker=t.marker
                )
                await asyncio.sleep(0.3)
                meter.add(before, meter.read())
                ok = [r for r in rs if r.ok and r.tokens() == expected]
                level[t.name] = {
                    "streams": len(rs),
                    "errors": len(rs) - len(ok),
                    "streams_per_s": round(len(ok) / elapsed, 2) if elapsed else None,
                    "deltas_per_s": round(len(ok) * tokens / elapsed, 1) if elapsed else None,
                    "ttft_p50_ms": ms(pct([r.ttft for r in ok], 50)),
                    "ttft_p99_ms": ms(pct([r.ttft for r in ok], 99)),
                    "total_p50_ms": ms(pct([r.total for r in ok], 50)),
                    "cpu_ms_per_stream": round(meter.cpu * 1000 / max(1, len(rs)), 3),
                    "cpu_ms_per_delta": round(meter.cpu * 1000 / max(1, len(rs) * tokens), 4),
                    "db_cpu_ms_per_stream": round(meter.db * 1000 / max(1, len(rs)), 3)
                    if t.db_group
                    else None,
                    "cpu_s": round(meter.cpu, 2),
                    "elapsed_s": round(elapsed, 2),
                }
                if meter.detail:
                    level[t.name]["cpu_ms_per_stream_by_process"] = meter.per(len(rs))
                self.log(
                    f"    paced c={concurrency} {t.name}: {level[t.name]['streams_per_s']} streams/s, ttft p50 {level[t.name]['ttft_p50_ms']} ms, errors {level[t.name]['errors']}"
                )
            out[f"c{concurrency}"] = level
        return out

    # ------------------------------------------------------------------ long streams held at once

    async def long(self) -> dict[str, Any]:
        """Many long streams open at once: every delta in order, largest gap, errors, RSS per stream."""
        out: dict[str, Any] = {"open": await self._open_level()}
        ttft, tokens, gap = self.sizes.long
        expected = self.expected(tokens)
        out["upstream"] = {"ttft_ms": ttft, "tokens": tokens, "gap_ms": gap}
        for clients in self.sizes.long_clients:
            level: dict[str, Any] = {}
            for t in self.targets:
                await self._fresh(t, ttft_ms=ttft, tokens=tokens, gap_ms=gap)
                level[t.name] = await self._hold(t, clients, tokens, gap, expected)
                figures = level[t.name]
                # A target that can be restarted is restarted before the next level instead of drained.
                figures["settle_seconds"] = await self.settle(t, limit=5.0 if t.restart else 90.0)
                self.log(
                    f"    long n={clients} {t.name}: held {figures['held_at_once']}, complete {figures['complete']}, errors {figures['errors']}, max gap {figures['max_gap_ms']} ms, {figures['rss_kib_per_stream']} KiB/stream, idle again after {figures['settle_seconds']} s"
                )
            out[f"n{clients}"] = level
        return out

    async def _fresh(self, t: Target, **shape: float) -> None:
        """Restart ``t`` when it can be (the previous level's dropped streams must not load this
        one, nor the memory they kept lower its idle figure), warm it with a few short streams
        (what a server allocates once, at its first requests, is not memory per stream), then
        set the upstream to ``shape``."""
        await self.configure(ttft_ms=0, tokens=5, gap_ms=0)  # before: a restart waits for an answer
        if t.restart is not None:
            t.restart()
        conn = Connection("127.0.0.1", t.port)
        for _ in range(self.sizes.warmup):
            await conn.request("POST", t.path, t.body(stream=True), marker=t.marker)
        conn.close()
        await self.configure(**shape)

    async def _open_level(self) -> dict[str, Any]:
        """The largest count of long streams, each at a pace the machine keeps up with: memory
        per open stream measured while every stream is open and none waits behind a backlog."""
        ttft, tokens, gap = self.sizes.open
        clients = max(self.sizes.long_clients)
        expected = self.expected(tokens)
        level: dict[str, Any] = {"upstream": {"ttft_ms": ttft, "tokens": tokens, "gap_ms": gap}}
        for t in self.targets:
            await self._fresh(t, ttft_ms=ttft, tokens=tokens, gap_ms=gap)
            level[t.name] = figures = await self._hold(
                t,
                clients,
                tokens,
                gap,
                expected,
                ramp_per_s=self.sizes.open_ramp_per_s,
                max_pending=self.sizes.open_pending,
                timeout=ttft / 1000 + tokens * gap / 1000 + self.sizes.long_timeout,
            )
            figures["settle_seconds"] = await self.settle(t, limit=5.0 if t.restart else 90.0)
            self.log(
                f"    open n={clients} {t.name}: complete {figures['complete']}, max gap {figures['max_gap_ms']} ms, {figures['rss_kib_per_stream_steady']} KiB/stream while all open"
            )
        return level

    async def _hold(
        self,
        t: Target,
        clients: int,
        tokens: int,
        gap_ms: float,
        expected: list[str],
        ramp_per_s: float | None = None,
        max_pending: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """``clients`` streams opened at ``ramp_per_s`` (and, with ``max_pending``, only while
        fewer than that many opened streams still wait for their first token), held to their end."""
        if t.group:
            t.group.thaw()
        idle_kinds = t.group.rss_by_kind() if t.group else {}
        idle_rss = sum(idle_kinds.values())
        peak_rss = idle_rss
        peak_kinds = dict(idle_kinds)
        meter = CpuMeter(t, detail=t.name == "ours")
        before = meter.read()
        body = t.body(stream=True)
        results: list[Result] = []
        done = asyncio.Event()

        samples: list[tuple[float, dict[str, int]]] = []

        async def one(result: Result) -> None:
            conn = Connection("127.0.0.1", t.port)
            await conn.request(
                "POST",
                t.path,
                body,
                marker=t.marker,
                timeout=timeout or self.sizes.long_timeout,
                result=result,
            )
            conn.close()

        oldest = 0  # results before it all have their first token (or ended)

        def pending() -> int:
            nonlocal oldest
            while oldest < len(results) and (results[oldest].first or results[oldest].end):
                oldest += 1
            return sum(1 for r in results[oldest:] if not r.first and not r.end)

        async def sample() -> None:
            nonlocal peak_rss
            while not done.is_set():
                if t.group:
                    kinds = t.group.rss_by_kind()
                    peak_rss = max(peak_rss, sum(kinds.values()))
                    for kind, value in kinds.items():
                        peak_kinds[kind] = max(peak_kinds.get(kind, 0), value)
                    samples.append((time.perf_counter(), kinds))
                try:
                    await asyncio.wait_for(done.wait(), 0.5)
                except TimeoutError:
                    pass

        sampler = asyncio.create_task(sample())
        tasks = []
        step = max(1, int((ramp_per_s or self.sizes.long_ramp_per_s) / 100))
        for i in range(0, clients, step):
            while max_pending and pending() >= max_pending:
                await asyncio.sleep(0.005)
            for _ in range(min(step, clients - i)):
                results.append(result := Result())
                tasks.append(asyncio.create_task(one(result)))
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        done.set()
        await sampler
        await asyncio.sleep(0.3)
        meter.add(before, meter.read())
        complete = [r for r in results if r.ok and r.tokens() == expected]
        # The samples taken while every stream was open: after the last first token, before the
        # first end (``steady`` figures; none when streams started behind others' ends).
        steady = [
            kinds
            for when, kinds in samples
            if complete and max(r.first for r in complete) < when < min(r.end or math.inf for r in results)
        ]
        errors: dict[str, int] = {}
        for r in results:
            if not r.ok:
                key = r.error.split(":")[0] if r.error else f"HTTP {r.status}"
                errors[key] = errors.get(key, 0) + 1
            elif r.tokens() != expected:
                errors["deltas missing or out of order"] = errors.get("deltas missing or out of order", 0) + 1
        held = _max_overlap([(r.head, r.end) for r in results if r.head])
        gaps = [r.max_gap for r in complete]
        limit = 10 * gap_ms / 1000
        return {
            "clients": clients,
            "complete": len(complete),
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "held_at_once": held,
            "max_gap_ms": ms(max(gaps) if gaps else None),
            "gap_p99_ms": ms(pct(gaps, 99)),
            "streams_over_gap_limit": sum(1 for g in gaps if g > limit),
            "ttft_p50_ms": ms(pct([r.ttft for r in complete], 50)),
            "ttft_p99_ms": ms(pct([r.ttft for r in complete], 99)),
            "idle_rss_mib": round(idle_rss / 2**20, 1),
            "peak_rss_mib": round(peak_rss / 2**20, 1),
            "rss_kib_per_stream": round((peak_rss - idle_rss) / 1024 / max(1, held), 1) if t.group else None,
            # The median of the samples taken while all were open, per stream (None when no
            # sample fell in that window: streams that started late behind a backlog).
            "rss_kib_per_stream_steady": _steady_kib(steady, idle_rss, clients),
            "rss_kib_per_stream_steady_by_process": {
                kind: _steady_kib(
                    [{kind: sample.get(kind, 0)} for sample in steady], idle_kinds.get(kind, 0), clients
                )
                for kind in sorted(idle_kinds)
            }
            if steady
            else None,
            "cpu_ms_per_delta": round(meter.cpu * 1000 / max(1, len(results) * tokens), 4),
            "held_ok": bool(len(complete) == clients and not any(g > limit for g in gaps)),
            **({"cpu_ms_per_stream_by_process": meter.per(len(results))} if meter.detail else {}),
            # Each kind's own peak (they need not peak together): where the memory per stream goes.
            "rss_kib_per_stream_by_process": {
                kind: round((peak - idle_kinds.get(kind, 0)) / 1024 / max(1, held), 1)
                for kind, peak in sorted(peak_kinds.items())
            }
            if t.group
            else None,
        }

    # ------------------------------------------------------------------ agentic: three upstream turns

    async def agentic(self) -> dict[str, Any]:
        """One response with two hosted-tool round trips (three upstream turns); others loop client-side."""
        await self.configure(ttft_ms=0, tokens=self.sizes.instant_tokens, gap_ms=0, tool_turns=2)
        out: dict[str, Any] = {"upstream_turns": 3}
        conns = {t.name: Connection("127.0.0.1", t.port) for t in self.targets}
        timings: dict[str, list[float]] = {t.name: [] for t in self.targets}
        errors = {t.name: 0 for t in self.targets}
        meters = {t.name: CpuMeter(t) for t in self.targets}
        for r in range(self.sizes.agentic_rounds + 1):
            for t in self.targets:
                before = meters[t.name].read()
                start = time.perf_counter()
                ok = await (
                    self._agentic_ours(t, conns[t.name])
                    if t.name == "ours"
                    else self._agentic_client(t, conns[t.name])
                )
                elapsed = time.perf_counter() - start
                await asyncio.sleep(0.002)
                if r == 0:
                    continue  # warm-up round
                meters[t.name].add(before, meters[t.name].read())
                if ok:
                    timings[t.name].append(elapsed)
                else:
                    errors[t.name] += 1
        for conn in conns.values():
            conn.close()
        for t in self.targets:
            out[t.name] = {
                "responses": self.sizes.agentic_rounds,
                "errors": errors[t.name],
                "p50_ms": ms(pct(timings[t.name], 50)),
                "p99_ms": ms(pct(timings[t.name], 99)),
                "cpu_ms_per_response": round(
                    meters[t.name].cpu * 1000 / max(1, self.sizes.agentic_rounds), 3
                ),
                "mode": "server-side loop (hosted tool)"
                if t.name == "ours"
                else "client-side loop, 3 requests",
            }
        return out

    async def _agentic_ours(self, t: Target, conn: Connection) -> bool:
        res = await conn.request(
            "POST",
            t.path,
            t.body(
                stream=False, input="Look it up twice.", tools=[{"type": "function", "name": HOSTED_TOOL}]
            ),
        )
        if not res.ok:
            return False
        kinds = [item.get("type") for item in json.loads(res.body).get("output", [])]
        return (
            kinds.count("function_call") == 2
            and kinds.count("function_call_output") == 2
            and kinds[-1] == "message"
        )

    async def _agentic_client(self, t: Target, conn: Connection) -> bool:
        tools = [
            {
                "type": "function",
                "name": HOSTED_TOOL,
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}},
                    "required": ["query"],
                },
            }
        ]
        items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": "Look it up twice."}]
        for _ in range(3):
            res = await conn.request("POST", t.path, t.body(stream=False, input=items, tools=tools))
            if not res.ok:
                return False
            output = json.loads(res.body).get("output", [])
            calls = [o for o in output if o.get("type") == "function_call"]
            if not calls:
                return any(o.get("type") == "message" for o in output)
            for call in calls:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["call_id"],
                        "name": call["name"],
                        "arguments": call["arguments"],
                    }
                )
                items.append(
                    {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": json.dumps({"query": "bench", "answer": 42}),
                    }
                )
        return False

    # ------------------------------------------------------------------ store: true against store: false

    async def store(self) -> dict[str, Any]:
        tokens = self.sizes.instant_tokens
        await self.configure(ttft_ms=0, tokens=tokens, gap_ms=0, tool_turns=2)
        ours = self.target("ours")
        if ours is None:
            return {}
        conn = Connection("127.0.0.1", ours.port)
        cases = [(store, stream) for stream in (False, True) for store in (True, False)]
        results: dict[tuple[bool, bool], list[Result]] = {c: [] for c in cases}
        meters = {c: CpuMeter(ours) for c in cases}
        for r in range(self.sizes.store_rounds + 1):
            for case in cases:
                store, stream = case
                before = meters[case].read()
                res = await conn.request(
                    "POST",
                    ours.path,
                    ours.body(stream=stream, store=store),
                    marker=ours.marker if stream else b"",
                )
                await asyncio.sleep(0.002)
                if r:
                    meters[case].add(before, meters[case].read())
                    results[case].append(res)
        conn.close()
        out: dict[str, Any] = {}
        for (store, stream), rs in results.items():
            ok = [r for r in rs if r.ok]
            key = f"{'stream' if stream else 'json'}_store_{'true' if store else 'false'}"
            values = [r.ttft if stream else r.total for r in ok]
            out[key] = {
                "requests": len(rs),
                "errors": len(rs) - len(ok),
                "p50_ms": ms(pct(values, 50)),
                "p99_ms": ms(pct(values, 99)),
                "cpu_ms_per_request": round(meters[(store, stream)].cpu * 1000 / max(1, len(rs)), 3),
                "db_cpu_ms_per_request": round(meters[(store, stream)].db * 1000 / max(1, len(rs)), 3)
                if ours.db_group
                else None,
            }
        return out

    # ------------------------------------------------------------------ previous_response_id chain

    async def chain(self) -> dict[str, Any]:
        """Chains ``chain_depth`` deep: ours with previous_response_id; direct resending the history."""
        await self.configure(ttft_ms=0, tokens=self.sizes.instant_tokens, gap_ms=0)
        depth = self.sizes.chain_depth
        out: dict[str, Any] = {"depth": depth, "chains": self.sizes.chains}
        for t in self.targets:
            if t.name == "litellm":
                continue  # LiteLLM forwards previous_response_id to a provider that stores; ours does not
            conn = Connection("127.0.0.1", t.port)
            by_depth: dict[int, list[float]] = {d: [] for d in range(1, depth + 1)}
            errors = 0
            meter = CpuMeter(t)
            before = meter.read()
            for _ in range(self.sizes.chains):
                previous: str | None = None
                history: list[dict[str, Any]] = []
                for d in range(1, depth + 1):
                    if t.name == "ours":
                        extra = {"previous_response_id": previous} if previous else {}
                        res = await conn.request(
                            "POST", t.path, t.body(stream=False, input=f"Turn {d}.", **extra)
                        )
                    else:
                        history.append({"type": "message", "role": "user", "content": f"Turn {d}."})
                        res = await conn.request("POST", t.path, t.body(stream=False, input=history))
                    if not res.ok:
                        errors += 1
                        break
                    data = json.loads(res.body)
                    previous = data.get("id")
                    history.extend(
                        {k: v for k, v in o.items() if k in ("type", "role", "content")}
                        for o in data.get("output", [])
                    )
                    by_depth[d].append(res.total)
            await asyncio.sleep(0.2)
            meter.add(before, meter.read())
            conn.close()
            requests = self.sizes.chains * depth
            out[t.name] = {
                "errors": errors,
                "depth1_p50_ms": ms(pct(by_depth[1], 50)),
                f"depth{depth}_p50_ms": ms(pct(by_depth[depth], 50)),
                "p50_ms": ms(pct([v for vs in by_depth.values() for v in vs], 50)),
                "cpu_ms_per_request": round(meter.cpu * 1000 / max(1, requests), 3),
                "db_cpu_ms_per_request": round(meter.db * 1000 / max(1, requests), 3) if t.db_group else None,
            }
        return out


def _steady_kib(samples: list[dict[str, int]], idle: int, streams: int) -> float | None:
    """Median resident bytes of ``samples`` (summed over their processes) above ``idle``, in KiB
    per stream."""
    if not samples or not streams:
        return None
    return round((statistics.median(sum(sample.values()) for sample in samples) - idle) / 1024 / streams, 1)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best
