"""Answer each Slack event once: Slack sends an Events API delivery again (same `event_id`,
with `X-Slack-Retry-Num`) when its first answer was late or lost, and the copy may reach
another replica. The ids of the events answered are kept with the webhook deliveries
(provider `slack`), so every replica knows them."""

from __future__ import annotations

from bot.services import ingest
from bot.usecases.context import Context

PROVIDER = "slack"


async def first_delivery(ctx: Context, *, event_id: str, event_type: str) -> bool:
    """True the first time `event_id` arrives (answer it), False for every copy after."""
    now = ctx.clock.now()
    return await ctx.write(
        lambda s: ingest.first_sight(
            s, now=now, provider=PROVIDER, delivery_id=event_id, event=event_type
        )
    )
