"""The host's loop middleware: refuses to send anything that looks like a secret to a model."""

from __future__ import annotations

from providers_app.adapters.base import message_text
from responses_app.loop.middleware import LoopContext, LoopMiddleware, StopLoop


class NoSecretsMiddleware(LoopMiddleware):
    def before_sample(self, context: LoopContext) -> None:
        for item in context.model_request.items:
            if item.get("type") == "message" and "TOP-SECRET" in message_text(item):
                raise StopLoop("The host site does not send secrets to models.", code="secret_detected")
