"""``make bench``: what the gateway adds, side by side with the upstream alone and with LiteLLM.

Everything listens on 127.0.0.1: the fake upstream (``bench.upstream``), our server in the embedded
default and in the production topology (daphne + Celery threads pool + Redis + PostgreSQL), and with
``--compare litellm`` the pinned LiteLLM proxy. Prints a table per topology; ``--json`` prints the
figures as JSON with stable keys. ``docs/benchmark.md`` explains how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import breakdown_table, evaluate, table
from .shapes import Bench, Sizes
from .targets import LITELLM_VERSION, ROOT, LiteLLM, OurServer, Upstream, production_available
from .upstream import raise_fd_limit

SHAPES = ("instant", "paced", "long", "agentic", "store", "chain")
TOPOLOGIES = ("embedded", "production")
SCALING_ROUNDS = 3


def _csv_ints(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in value.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (seconds): proves the benchmark works, measures nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON (stable keys) instead of tables"
    )
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {','.join(SHAPES)}"
    )
    parser.add_argument(
        "--topology", default=",".join(TOPOLOGIES), help="embedded, production or both (comma-separated)"
    )
    parser.add_argument("--compare", default="", help="'litellm' to add the pinned LiteLLM proxy")
    parser.add_argument(
        "--upstream-api",
        choices=("responses", "chat"),
        default="responses",
        help="what our server speaks to the upstream",
    )
    parser.add_argument("--paced-concurrency", type=_csv_ints, help="e.g. 50,200")
    parser.add_argument("--long-clients", type=_csv_ints, help="e.g. 1000,2000")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the instant shape")
    parser.add_argument("--paced-seconds", type=float, help="seconds of load per target and concurrency")
    parser.add_argument(
        "--long-clients-litellm-max",
        type=int,
        default=1000,
        help="largest long-stream count also sent to LiteLLM (it is slow to drain)",
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=_cores(),
        help="Celery worker processes of the production topology (default: the cores; paced at the "
        "highest concurrency is also run with one, for the scaling factor)",
    )
    parser.add_argument(
        "--workdir", help="where logs and databases go (default: a temporary folder under artifacts/)"
    )
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    args.topology = [t.strip() for t in args.topology.split(",") if t.strip()]
    if set(args.topology) - set(TOPOLOGIES):
        parser.error("--topology takes embedded and/or production")
    if args.compare not in ("", "litellm"):
        parser.error("--compare takes 'litellm'")
    return args


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.paced_concurrency:
        sizes.paced_concurrency = args.paced_concurrency
    if args.long_clients:
        sizes.long_clients = args.long_clients
    if args.rounds:
        sizes.instant_rounds = args.rounds
    if args.paced_seconds:
        sizes.paced_seconds = args.paced_seconds
    return sizes


async def run_topology(bench: Bench, shapes: list[str], litellm_long_max: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ours = bench.target("ours")
    if ours is not None and ours.group is not None:
        ours.group.thaw()
        await asyncio.sleep(1.0)
        out["rss_idle_mib"] = round(ours.group.rss_bytes() / 2**20, 1)
    # Long streams last: streams dropped at the time limit keep their server busy for a while.
    for name in sorted(shapes, key=lambda n: n == "long"):
        started = time.perf_counter()
        bench.log(f"  shape {name}…")
        targets = bench.targets
        if name == "long":
            bench.targets = [t for t in targets if t.name != "litellm"]
            result = await bench.long()
            lite = next((t for t in targets if t.name == "litellm"), None)
            if lite is not None:
                # LiteLLM drains slowly at thousands of streams; it gets the counts up to the cap.
                keep = bench.sizes.long_clients
                bench.targets = [lite]
                bench.sizes.long_clients = tuple(n for n in keep if n <= litellm_long_max)
                if bench.sizes.long_clients:
                    extra = await bench.long()
                    for key, value in extra.items():
                        if key.startswith("n") or key == "open":
                            result[key]["litellm"] = value["litellm"]
                bench.sizes.long_clients = keep
            bench.targets = targets
        else:
            result = await getattr(bench, name)()
        result["seconds"] = round(time.perf_counter() - started, 1)
        out[name] = result
        if name == "paced" and ours is not None and ours.group is not None:
            out["rss_after_load_mib"] = round(ours.group.rss_bytes() / 2**20, 1)
    if ours is not None and ours.group is not None and "long" in out:
        peaks = [
            v["ours"]["peak_rss_mib"] for k, v in out["long"].items() if k.startswith("n") and "ours" in v
        ]
        out["rss_peak_long_mib"] = max(peaks) if peaks else None
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    log = (
        (lambda msg: print(msg, file=sys.stderr, flush=True))
        if args.json
        else (lambda msg: print(msg, flush=True))
    )
    fd_limit = raise_fd_limit()
    sizes = sizes_for(args)
    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-", dir=_artifacts()))
    ).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "meta": {
            "quick": bool(args.quick),
            "shapes": args.shapes,
            "upstream_api": args.upstream_api,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "fd_limit": fd_limit,
            "litellm": LITELLM_VERSION if args.compare else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "workdir": str(workdir),
        },
        "topologies": {},
    }
    upstream = Upstream(workdir)
    litellm: LiteLLM | None = None
    try:
        if args.compare == "litellm":
            log("starting LiteLLM…")
            litellm = LiteLLM(upstream, workdir)
        for index, topology in enumerate(args.topology):
            if index and litellm is not None:
                litellm.restart()  # idle again after the previous topology's long streams
            if topology == "production":
                reason = production_available()
                if reason:
                    log(f"production topology skipped: {reason}")
                    report["topologies"][topology] = {"skipped": reason}
                    continue
            log(f"starting our server ({topology})…")
            await Bench(upstream, [], sizes).configure(ttft_ms=0, tokens=sizes.instant_tokens, gap_ms=0)
            processes = args.worker_processes if topology == "production" else 0
            server = OurServer(
                topology,
                upstream,
                workdir,
                upstream_api=args.upstream_api,
                worker_processes=max(1, processes),
            )
            try:
                targets = [upstream.target(chat=args.upstream_api == "chat"), server.target()]
                if litellm is not None:
                    targets.append(litellm.target())
                bench = Bench(upstream, targets, sizes, ours=server, log=log)
                await bench.configure(ttft_ms=0, tokens=sizes.instant_tokens, gap_ms=0)
                await bench._warm({t.name: _conn(t) for t in targets}, sizes.instant_tokens)
                server.refresh_db_group()
                targets[1].db_group = server.db_group
                shapes = await run_topology(bench, args.shapes, args.long_clients_litellm_max)
                shapes["processes"] = len(server.group.pids())
                if processes:
                    shapes["worker_processes"] = processes
                if processes > 1 and "paced" in shapes:
                    shapes["paced"]["scaling"] = await _scaling(bench, server, args, log)
            finally:
                server.stop()
            report["topologies"][topology] = {"shapes": shapes, "targets": evaluate(topology, shapes)}
            if not args.json:
                print(table(topology, report["topologies"][topology]["targets"]), flush=True)
                if (shapes.get("instant") or {}).get("breakdown"):
                    print(breakdown_table(shapes["instant"]["breakdown"]), flush=True)
                print(
                    f"RSS ours: idle {shapes.get('rss_idle_mib')} MiB, after paced load {shapes.get('rss_after_load_mib')} MiB, peak with long streams {shapes.get('rss_peak_long_mib')} MiB\n",
                    flush=True,
                )
    finally:
        if litellm is not None:
            litellm.stop()
        upstream.stop()
    return report


async def _scaling(bench: Bench, server: OurServer, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """The paced shape at its highest concurrency with ONE worker process and with N: the scaling factor.

    A second server with one worker process runs beside the first (idle while the other is
    measured); the two take turns for ``SCALING_ROUNDS`` rounds, so a busy moment of a shared
    machine hits both, and the factor is the ratio of their medians.
    """
    sizes = bench.sizes
    top = max(sizes.paced_concurrency)
    log(f"  scaling: a server with 1 worker process beside the one with {server.worker_processes}, c={top}…")
    single = OurServer(
        "production",
        bench.upstream,
        Path(bench.ours.workdir).parent if bench.ours else Path(args.workdir or "."),
        upstream_api=args.upstream_api,
        worker_processes=1,
        label="production-1",
    )
    try:
        ttft, tokens, gap = sizes.paced
        await bench.configure(ttft_ms=ttft, tokens=tokens, gap_ms=gap)
        expected = bench.expected(tokens)
        many_target, one_target = server.target(), single.target()
        rates: dict[str, list[float]] = {"one": [], "many": []}
        seconds = max(2.0, sizes.paced_seconds / 2)
        for round_ in range(SCALING_ROUNDS):
            for name, target in (("one", one_target), ("many", many_target))[:: 1 if round_ % 2 else -1]:
                results, elapsed = await bench.closed_loop(
                    target, top, seconds, target.body(stream=True), marker=target.marker
                )
                ok = [r for r in results if r.ok and r.tokens() == expected]
                rates[name].append(round(len(ok) / elapsed, 2) if elapsed else 0.0)
                await bench.settle(target, limit=10.0)
            log(
                f"    round {round_ + 1}: 1 process {rates['one'][-1]}, {server.worker_processes} processes {rates['many'][-1]} streams/s"
            )
    finally:
        single.stop()
    one, many = statistics.median(rates["one"]), statistics.median(rates["many"])
    return {
        "concurrency": top,
        "worker_processes": server.worker_processes,
        "rounds": rates,
        "one_process_streams_per_s": one,
        "n_processes_streams_per_s": many,
        "factor": round(many / one, 2) if one else None,
    }


def _conn(target: Any) -> Any:
    from .client import Connection

    return Connection("127.0.0.1", target.port)


def _artifacts() -> str:
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on SIGTERM too
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, sort_keys=True, indent=2))
    else:
        (Path(report["meta"]["workdir"]) / "report.json").write_text(
            json.dumps(report, sort_keys=True, indent=2)
        )
        print(
            f"figures as JSON: {Path(report['meta']['workdir']).relative_to(ROOT) if Path(report['meta']['workdir']).is_relative_to(ROOT) else report['meta']['workdir']}/report.json"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
