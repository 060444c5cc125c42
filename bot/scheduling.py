"""APScheduler wiring: stable job ids, coalescing, one instance at a time.

Jobs are thin: the work lives in services that take the time as an argument, so they are
tested as plain functions with a fixed clock. Due work is claimed from the database, so
several replicas may run the same jobs safely.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.digest import register_digest
from bot.runtime import Runtime
from bot.services import gates
from bot.services.housekeeping import drop_old_webhook_bodies

log = logging.getLogger(__name__)

CHECKS_TICK_SECONDS = 0.5
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}


def build_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)


def outbox_tick(runtime: Runtime) -> None:
    """Retries come due while nothing new is committed: wake the worker to look."""
    runtime.worker.wake()


async def webhook_retention(runtime: Runtime) -> int:
    now = runtime.clock.now()
    retention = timedelta(days=runtime.settings.webhook_retention_days)
    dropped = await asyncio.to_thread(
        runtime.db.write, lambda s: drop_old_webhook_bodies(s, now=now, retention=retention)
    )
    if dropped:
        log.info("dropped %d raw webhook bodies older than %s", dropped, retention)
    return dropped


async def gate_sweep(runtime: Runtime) -> int:
    """Remind approvers of gates waiting long; expire the ones past their time."""
    now = runtime.clock.now()
    acted = await asyncio.to_thread(
        runtime.db.write, lambda s: gates.sweep(s, now=now, config=runtime.config)
    )
    if acted:
        runtime.worker.wake()
    return acted


async def checks_tick(runtime: Runtime) -> int:
    """Run the verification checks that are due; results wake the outbox."""
    ran = await runtime.checks.run_due()
    if ran:
        runtime.worker.wake()
    return ran


def register_jobs(scheduler: AsyncIOScheduler, runtime: Runtime) -> None:
    scheduler.add_job(
        outbox_tick,
        "interval",
        seconds=2,
        id="outbox.tick",
        args=[runtime],
        replace_existing=True,
    )
    scheduler.add_job(
        checks_tick,
        "interval",
        # A run due just after a tick waits for the next: half a second keeps fire-time
        # drift well under a second while the claim stays one indexed query.
        seconds=CHECKS_TICK_SECONDS,
        id="checks.tick",
        args=[runtime],
        replace_existing=True,
    )
    scheduler.add_job(
        gate_sweep,
        "interval",
        seconds=30,
        id="gates.sweep",
        args=[runtime],
        replace_existing=True,
    )
    scheduler.add_job(
        webhook_retention,
        "interval",
        hours=1,
        id="webhooks.retention",
        args=[runtime],
        replace_existing=True,
    )
    register_digest(scheduler, runtime)
