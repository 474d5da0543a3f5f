"""Site settings for the loop tests: the embedded default with short limits and test middleware."""

import os

from openresponses_site.settings import *  # noqa: F403

OPENRESPONSES = {
    **OPENRESPONSES,  # noqa: F405
    "TOOL_TIMEOUT": 1.0,
    "MAX_LOOP_ITERATIONS": 3,
    "MIDDLEWARE": ["tests.loop.support.GuardMiddleware", "responses_app.loop.redaction.RedactEmails"],
    "DISCONNECT_CANCELS": os.environ.get("TEST_DISCONNECT_CANCELS") == "1",
}
