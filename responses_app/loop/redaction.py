"""An example loop middleware, usable as is: redact e-mail addresses before the model sees them.

Enable it with ``OPENRESPONSES = {"MIDDLEWARE": ["responses_app.loop.redaction.RedactEmails"]}``
(or ``OPENRESPONSES_MIDDLEWARE=responses_app.loop.redaction.RedactEmails``). Subclass it and set
``pattern`` / ``replacement`` to redact something else.
"""

from __future__ import annotations

import re
from typing import Any

from responses_app.loop.middleware import LoopContext, LoopMiddleware


def _redact_item(item: dict[str, Any], pattern: re.Pattern[str], replacement: str) -> dict[str, Any]:
    if item.get("type") == "message" and isinstance(item.get("content"), list):
        parts = [
            {**part, "text": pattern.sub(replacement, part["text"])}
            if isinstance(part.get("text"), str)
            else part
            for part in item["content"]
        ]
        return {**item, "content": parts}
    if item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
        return {**item, "output": pattern.sub(replacement, item["output"])}
    return item


class RedactEmails(LoopMiddleware):
    """Replace e-mail addresses in every message and tool output sent to the model."""

    pattern = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
    replacement = "[redacted email]"

    def before_sample(self, context: LoopContext) -> None:
        request = context.model_request
        # Copies, not in-place edits: the stored conversation keeps what the client sent.
        request.items = [_redact_item(item, self.pattern, self.replacement) for item in request.items]
        if request.instructions:
            request.instructions = self.pattern.sub(self.replacement, request.instructions)
