"""Two (or more) checkouts of the project side by side, requests alternating: an A/B of latency.

``python -m bench.ab before=/path/to/a/checkout after=. [--rounds 150] [--topology production]``
starts the fake upstream once and one server per checkout (each from its own tree), then runs the
instant shape at concurrency 1 with the requests of each round going to every server and to the
upstream in turn. On a machine shared with other work, latency swings between runs far more than
between the two versions within one run, so a comparison made this way holds where two
``bench.run`` runs one after the other do not. Prints one JSON line per checkout: added TTFT and
non-streamed latency (p50, ms, against the upstream alone) and the TTFT breakdown
(``docs/benchmark.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from .client import Connection, Result
from .shapes import Bench, Sizes, pct
from .targets import OurServer, Target, Upstream, production_available

TOKENS = 20
WARMUP = 15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="name=path of a checkout, two or more")
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--topology", choices=("embedded", "production"), default="production")
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--workdir", help="where logs and databases go (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.trees = dict(tree.split("=", 1) for tree in args.trees)
    if len(args.trees) < 2:
        parser.error("name two checkouts or more")
    return args


async def alternate(targets: dict[str, Target], rounds: int) -> dict[tuple[str, str], list[Result]]:
    conns = {name: Connection("127.0.0.1", t.port) for name, t in targets.items()}
    names = list(targets)

    async def one(name: str, stream: bool) -> Result:
        t = targets[name]
        return await conns[name].request(
            "POST", t.path, t.body(stream=stream), marker=t.marker if stream else b""
        )

    for _ in range(WARMUP):
        for name in names:
            for stream in (False, True):
                await one(name, stream)
    results: dict[tuple[str, str], list[Result]] = {}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for mode in ("json", "stream"):
            for name in order:
                results.setdefault((name, mode), []).append(await one(name, mode == "stream"))
                await asyncio.sleep(0.002)  # as the instant shape: the server's bookkeeping
    for conn in conns.values():
        conn.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.topology == "production" and (reason := production_available()):
        raise SystemExit(f"the production topology needs PostgreSQL and Redis: {reason}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    upstream = Upstream(workdir)
    servers: dict[str, OurServer] = {}
    try:
        for name, path in args.trees.items():
            servers[name] = OurServer(
                args.topology,
                upstream,
                workdir,
                worker_processes=args.worker_processes,
                label=name,
                root=Path(path).resolve(),
            )
        targets = {"direct": upstream.target()}
        for name, server in servers.items():
            targets[name] = server.target()
            targets[name].name = name
        bench = Bench(
            upstream=upstream, targets=list(targets.values()), sizes=Sizes(instant_rounds=args.rounds)
        )
        asyncio.run(bench.configure(ttft_ms=0, tokens=TOKENS, gap_ms=0))
        results = asyncio.run(alternate(targets, args.rounds))
        direct_ttft = pct([r.ttft for r in results[("direct", "stream")] if r.ok], 50) or 0.0
        direct_total = pct([r.total for r in results[("direct", "json")] if r.ok], 50) or 0.0
        for name, server in servers.items():
            streams = [r for r in results[(name, "stream")] if r.ok]
            answers = [r for r in results[(name, "json")] if r.ok]
            bench.ours = server
            out: dict[str, Any] = {
                "tree": name,
                "added_ttft_p50_ms": round(
                    ((pct([r.ttft for r in streams], 50) or 0) - direct_ttft) * 1000, 3
                ),
                "added_json_p50_ms": round(
                    ((pct([r.total for r in answers], 50) or 0) - direct_total) * 1000, 3
                ),
                "errors": 2 * args.rounds - len(streams) - len(answers),
                "breakdown": bench._breakdown(results[(name, "stream")], results[("direct", "stream")]),
            }
            print(json.dumps(out), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
