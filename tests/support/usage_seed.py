"""Plausible usage rows over the past day (for dashboard screenshots): ``python -m tests.support.usage_seed``.

Deterministic (a seeded generator), written straight into the store the way finished responses
leave them; run with the server's environment.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from decimal import Decimal

KEYS = [("team-a", "key:aaaa1111"), ("team-b", "key:bbbb2222"), ("ci", "key:cccc3333")]
MODELS = [
    ("gpt-4o", "openai", 0.6, Decimal("0.0000100")),
    ("claude-sonnet-4", "anthropic", 0.9, Decimal("0.0000150")),
    ("gemini-2.5-flash", "gemini", 0.3, Decimal("0.0000025")),
]


def seed(now: float | None = None, hours: int = 24) -> int:
    from responses_app.models import UsageRecord

    rng = random.Random(7)
    now = time.time() if now is None else now
    rows = []
    for hour in range(hours, 0, -1):
        busy = 10 if 6 <= hour <= 12 else 0
        for n in range(rng.randint(4, 10) + busy):
            created = now - hour * 3600 + rng.uniform(0, 3600) - 120
            key_name, owner = rng.choice(KEYS)
            model, provider, ttft, price = rng.choice(MODELS)
            failed = rng.random() < (0.25 if hour in (8, 9) and provider == "anthropic" else 0.03)
            tokens_in, tokens_out = rng.randint(200, 3000), rng.randint(20, 900)
            rows.append(
                UsageRecord(
                    response_id=f"resp_seed_{hour}_{n}",
                    owner=owner,
                    key_name=key_name,
                    model=model,
                    provider=provider,
                    status="failed" if failed else "completed",
                    day=datetime.fromtimestamp(created, tz=UTC).date(),
                    created_at=created,
                    input_tokens=tokens_in,
                    output_tokens=0 if failed else tokens_out,
                    cost=(price * (tokens_in + 3 * tokens_out)).quantize(Decimal("0.00000001")),
                    first_token_seconds=None if failed else ttft * rng.lognormvariate(0, 0.45),
                    total_seconds=rng.uniform(1, 9),
                    error_code="upstream_error" if failed else "",
                )
            )
    UsageRecord.objects.bulk_create(rows)
    return len(rows)


if __name__ == "__main__":
    import django

    django.setup()
    print(seed())
