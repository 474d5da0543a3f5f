"""The web process: daphne on uvloop (``python -m openresponses_site.serve`` takes daphne's arguments).

daphne runs on Twisted's asyncio reactor and installs it, on a plain asyncio loop, when it is first
imported, unless an asyncio reactor is installed already. This module installs it first, on the
loop :func:`responses_app.loop.supervision.host.new_event_loop` makes (uvloop's unless
``OPENRESPONSES_UVLOOP=0``), then hands over to daphne's command line.

Twisted parses the Content-Type of every POST with the ``email`` package (~0.19 ms of CPU) to fill
``request.args`` for HTML forms; daphne never reads them (the ASGI application gets the raw body),
so :func:`skip_form_parsing` turns that off for daphne's requests.
"""

from __future__ import annotations

import os
import sys
from typing import Any


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


def skip_form_parsing() -> None:
    """daphne's requests leave POST bodies unparsed by Twisted (daphne passes the raw body on)."""
    from daphne.http_protocol import WebRequest

    original = WebRequest.__init__
    if getattr(original, "skips_form_parsing", False):
        return

    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    __init__.skips_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    implementation = install_reactor()
    skip_form_parsing()
    from daphne.cli import CommandLineInterface

    print(f"[openresponses] web: daphne on {implementation}", flush=True)
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
