"""The web process: daphne on uvloop (``python -m openresponses_site.serve`` takes daphne's arguments).

daphne runs on Twisted's asyncio reactor and installs it, on a plain asyncio loop, when it is first
imported, unless an asyncio reactor is installed already. This module installs it first, on the
loop :func:`responses_app.loop.supervision.host.new_event_loop` makes (uvloop's unless
``OPENRESPONSES_UVLOOP=0``), then hands over to daphne's command line.
"""

from __future__ import annotations

import os
import sys


def install_reactor() -> str:
    """Install Twisted's asyncio reactor on our event loop; returns the loop's implementation."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor is installed already: install ours before importing daphne")
    from twisted.internet import asyncioreactor

    from responses_app.loop.supervision.host import loop_implementation, new_event_loop

    loop = new_event_loop()
    if "ASGI_THREADS" in os.environ:  # as daphne does for the loop it would have made
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=int(os.environ["ASGI_THREADS"])))
    asyncioreactor.install(loop)
    return loop_implementation(loop)


def main(argv: list[str] | None = None) -> None:
    implementation = install_reactor()
    from daphne.cli import CommandLineInterface

    print(f"[openresponses] web: daphne on {implementation}", flush=True)
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
