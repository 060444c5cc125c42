"""APScheduler wiring: stable job ids, coalescing, one instance at a time.

Each job is a thin wrapper around a use case, which takes the time from the app's clock, so
jobs are tested as plain functions with a fixed clock. Due work is claimed from the
database, so several replicas may run the same jobs safely.

The weekly DORA digest fires on `RELEASEBOT_DIGEST_DAY` (default mon) at
`RELEASEBOT_DIGEST_HOUR`:00 UTC (default 9). The audit chain's head is checkpointed every
`RELEASEBOT_AUDIT_CHECKPOINT_EVERY` seconds (default 300) when it moved.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.runtime import Runtime

CHECKS_TICK_SECONDS = 0.5
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
DIGEST_JOB_ID = "dora.weekly_digest"
MISFIRE_GRACE_SECONDS = 3600  # a replica busy or restarting at the hour still posts it


def build_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)


def outbox_tick(runtime: Runtime) -> None:
    """Retries come due while nothing new is committed: wake the worker to look."""
    runtime.usecases.wake_outbox()


async def webhook_retention(runtime: Runtime) -> int:
    return await runtime.usecases.drop_old_webhook_bodies()


async def gate_sweep(runtime: Runtime) -> int:
    """Remind approvers of gates waiting long; expire the ones past their time."""
    return await runtime.usecases.sweep_gates()


async def checks_tick(runtime: Runtime) -> int:
    """Run the verification checks that are due; results wake the outbox."""
    return await runtime.usecases.run_due_checks()


async def audit_forward(runtime: Runtime) -> int:
    """Queue the audit records appended since the last run for the SIEM's webhook."""
    return await runtime.usecases.forward_audit()


async def weekly_digest(runtime: Runtime) -> bool:
    """Queue last week's DORA digest for the default channel (once, across replicas)."""
    return await runtime.usecases.post_weekly_digest()


async def audit_checkpoint(runtime: Runtime) -> int | None:
    """Publish the audit chain's head (file, Slack, webhook) when it moved since the last."""
    return await runtime.usecases.publish_audit_checkpoint()


def digest_trigger(day: str, hour: int) -> CronTrigger:
    return CronTrigger(day_of_week=day, hour=hour, timezone=UTC)


def register_digest(scheduler: BaseScheduler, runtime: Runtime) -> None:
    scheduler.add_job(
        weekly_digest,
        digest_trigger(runtime.settings.digest_day, runtime.settings.digest_hour),
        id=DIGEST_JOB_ID,
        args=[runtime],
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
    )


def register_jobs(scheduler: AsyncIOScheduler, runtime: Runtime) -> None:
    every: list[tuple[Callable[[Runtime], Any], dict[str, float], str]] = [
        (outbox_tick, {"seconds": 2}, "outbox.tick"),
        # A run due just after a tick waits for the next: half a second keeps fire-time
        # drift well under a second while the claim stays one indexed query.
        (checks_tick, {"seconds": CHECKS_TICK_SECONDS}, "checks.tick"),
        (gate_sweep, {"seconds": 30}, "gates.sweep"),
        (webhook_retention, {"hours": 1}, "webhooks.retention"),
        (
            audit_checkpoint,
            {"seconds": runtime.settings.audit_checkpoint_every},
            "audit.checkpoint",
        ),
    ]
    if runtime.settings.audit_forward_url:
        every.append((audit_forward, {"seconds": 2}, "audit.forward"))
    for job, interval, job_id in every:
        scheduler.add_job(
            job, "interval", **interval, id=job_id, args=[runtime], replace_existing=True
        )
    register_digest(scheduler, runtime)
