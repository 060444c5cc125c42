"""Claim a scheduled job's tick before running it: one replica runs each tick."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.services import job_runs
from bot.usecases.context import Context

LEASE_SECONDS = 300.0  # a holder that crashed gives its tick up after this long
KEEP_RUNS = timedelta(days=1)


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
