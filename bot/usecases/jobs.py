"""Claim a scheduled job's tick before running it: one replica runs each tick."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from bot.services import job_runs
from bot.usecases.context import Context

LEASE_SECONDS = 300.0  # a holder that crashed gives its tick up after this long
KEEP_RUNS = timedelta(days=1)


def tick_of(now: datetime, every_seconds: float) -> datetime:
    """The tick `now` falls in, for a job run every `every_seconds` (the same on every
    replica, whenever its scheduler fires within the interval)."""
    start = math.floor(now.timestamp() / every_seconds) * every_seconds
    return datetime.fromtimestamp(start, UTC)


async def claim(ctx: Context, *, job_id: str, tick_at: datetime, holder: str) -> bool:
    now = ctx.clock.now()
    return await ctx.write(
        lambda s: job_runs.claim(
            s, job_id=job_id, tick_at=tick_at, holder=holder, now=now, lease=LEASE_SECONDS
        )
    )


async def finish(ctx: Context, *, job_id: str, tick_at: datetime, holder: str) -> None:
    now = ctx.clock.now()
    await ctx.write(
        lambda s: job_runs.finish(s, job_id=job_id, tick_at=tick_at, holder=holder, now=now)
    )


async def prune(ctx: Context) -> int:
    before = ctx.clock.now() - KEEP_RUNS
    return await ctx.write(lambda s: job_runs.prune(s, before=before))
