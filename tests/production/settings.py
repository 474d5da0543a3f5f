"""Site settings for the production-topology tests: the real settings, with short crash-safety timers."""

import os

from openresponses_site.settings import *  # noqa: F403

OPENRESPONSES = {
    **OPENRESPONSES,  # noqa: F405
    "ORPHAN_AFTER_SECONDS": 10.0,
    "HEARTBEAT_SECONDS": 2.0,
    "TOOL_TIMEOUT": float(os.environ.get("OPENRESPONSES_TEST_TOOL_TIMEOUT", "5")),
}
