"""APScheduler wiring: stable job ids, coalescing, one instance at a time.

Each job is a thin wrapper around a use case, which takes the time from the app's clock, so
jobs are tested as plain functions with a fixed clock. Several replicas may run the same
scheduler: each tick of a job in `CLAIMED` is claimed in the `job_run` table first
(`bot.usecases.jobs`), so one replica runs it (a crashed holder's claim expires after
five minutes). `outbox.tick` wakes this process's own worker, and `checks.tick` claims the
due check runs themselves (SKIP LOCKED), so both run on every replica.

The weekly DORA digest fires on `RELEASEBOT_DIGEST_DAY` (default mon) at
`RELEASEBOT_DIGEST_HOUR`:00 UTC (default 9).

`start_background` starts what runs beside the HTTP server, by role (`RELEASEBOT_ROLE`,
`releasebot serve --role`): `web` serves HTTP and stores deliveries; `worker` runs the
applier, the outbox worker and the scheduler (and still answers /healthz, /readyz and
/metrics); `all`, the default, runs both. Several web replicas and several workers may
share one PostgreSQL: deliveries are claimed by one applier, outbox rows by one worker,
each job tick by one scheduler. The audit chain's head is checkpointed every
`RELEASEBOT_AUDIT_CHECKPOINT_EVERY` seconds (default 300) when it moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.outside import Overrides
from bot.runtime import Runtime

log = logging.getLogger("releasebot")

CHECKS_TICK_SECONDS = 0.5
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
DIGEST_JOB_ID = "dora.weekly_digest"
MISFIRE_GRACE_SECONDS = 3600  # a replica busy or restarting at the hour still posts it
DIGEST_TICK_SECONDS = 3600.0  # the digest's tick: the hour it fires at
SKIPPED = "skipped"  # what a claimed job returns when another replica has its tick


def build_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS)


def outbox_tick(runtime: Runtime) -> None:
    """Retries come due while nothing new is committed: wake the worker to look."""
    runtime.usecases.wake_outbox()


async def webhook_retention(runtime: Runtime) -> int:
    """Forget old webhook bodies, and the job runs of ticks long past."""
    await runtime.usecases.prune_job_runs()
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


def tick_of(now: datetime, every_seconds: float) -> datetime:
    """The tick `now` falls in, for a job run every `every_seconds` (the same on every
    replica, whenever its scheduler fires within the interval)."""
    start = math.floor(now.timestamp() / every_seconds) * every_seconds
    return datetime.fromtimestamp(start, UTC)


def claimed(
    job: Callable[[Runtime], Awaitable[Any]], job_id: str, every_seconds: float, holder: str
) -> Callable[[Runtime], Awaitable[Any]]:
    """`job`, run only when this replica claims the tick it fires in (else `SKIPPED`)."""

    async def run(runtime: Runtime) -> Any:
        tick = tick_of(runtime.clock.now(), every_seconds)
        usecases = runtime.usecases
        if not await usecases.claim_job_tick(job_id=job_id, tick_at=tick, holder=holder):
            return SKIPPED
        try:
            return await job(runtime)
        finally:
            await usecases.finish_job_tick(job_id=job_id, tick_at=tick, holder=holder)

    run.__name__ = getattr(job, "__name__", job_id)
    return run


def new_holder() -> str:
    """This scheduler's name in the job claims: host, process and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def register_digest(scheduler: BaseScheduler, runtime: Runtime, holder: str | None = None) -> None:
    scheduler.add_job(
        claimed(weekly_digest, DIGEST_JOB_ID, DIGEST_TICK_SECONDS, holder or new_holder()),
        digest_trigger(runtime.settings.digest_day, runtime.settings.digest_hour),
        id=DIGEST_JOB_ID,
        args=[runtime],
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
    )


def jobs_of(runtime: Runtime) -> list[tuple[Callable[[Runtime], Any], float, str]]:
    """Every interval job: the function, its interval in seconds and its id."""
    every: list[tuple[Callable[[Runtime], Any], float, str]] = [
        (outbox_tick, 2, "outbox.tick"),
        # A run due just after a tick waits for the next: half a second keeps fire-time
        # drift well under a second while the claim stays one indexed query.
        (checks_tick, CHECKS_TICK_SECONDS, "checks.tick"),
        (gate_sweep, 30, "gates.sweep"),
        (webhook_retention, 3600, "webhooks.retention"),
        (audit_checkpoint, runtime.settings.audit_checkpoint_every, "audit.checkpoint"),
    ]
    if runtime.settings.audit_forward_url:
        every.append((audit_forward, 2, "audit.forward"))
    return every


CLAIMED = frozenset(
    {"gates.sweep", "webhooks.retention", "audit.checkpoint", "audit.forward", DIGEST_JOB_ID}
)


def register_jobs(scheduler: AsyncIOScheduler, runtime: Runtime, holder: str | None = None) -> None:
    holder = holder or new_holder()
    for job, seconds, job_id in jobs_of(runtime):
        run = claimed(job, job_id, seconds, holder) if job_id in CLAIMED else job
        scheduler.add_job(
            run, "interval", seconds=seconds, id=job_id, args=[runtime], replace_existing=True
        )
    register_digest(scheduler, runtime, holder)


# --- what runs beside the HTTP server, by role ---------------------------------------------


def start_background(
    runtime: Runtime, overrides: Overrides, stack: AsyncExitStack
) -> Callable[[], None]:
    """The scheduler's jobs, the applier's and the outbox worker's loops, drained when the
    app stops (a web process starts none of them).

    Returns `stop_claiming`, safe to call from a signal handler: from then on no delivery,
    outbox row or check run is claimed, and the work in flight has until
    `shutdown_grace_seconds` later to finish; when the app stops, what is still running then
    is cancelled and its claims are given back, so another replica takes them at once.
    """
    loop = asyncio.get_running_loop()
    deadline: list[float] = []  # when the work in flight is cut short, once draining
    works = runtime.settings.role != "web"
    log.info("releasebot role: %s", runtime.settings.role)

    def begin_drain() -> None:
        if not deadline:
            deadline.append(loop.time() + runtime.settings.shutdown_grace_seconds)
            runtime.applier.stop()
            runtime.worker.stop()
            runtime.spool_drainer.stop()
            runtime.verifier.stop()
            runtime.doorbell.stop()

    def stop_claiming() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(begin_drain)

    if works and overrides.start_scheduler:
        scheduler = build_scheduler()
        register_jobs(scheduler, runtime)
        scheduler.start()

        def stop_scheduler() -> None:
            if scheduler.running:
                scheduler.shutdown(wait=False)

        stack.callback(stop_scheduler)
    tasks: list[asyncio.Task[None]] = []
    if overrides.run_outbox_worker:  # every role takes webhooks, so every role may spool
        tasks.append(asyncio.create_task(runtime.spool_drainer.run(), name="spool-drainer"))
    if works and overrides.run_outbox_worker:
        tasks.append(
            asyncio.create_task(
                runtime.applier.run(poll_seconds=overrides.applier_poll_seconds), name="applier"
            )
        )
        tasks.append(
            asyncio.create_task(
                runtime.worker.run(poll_seconds=overrides.outbox_poll_seconds),
                name="outbox-worker",
            )
        )
        if runtime.doorbell.listens:  # woken by the other processes' work, not only by polls
            runtime.context.links["doorbell"] = runtime.doorbell.state  # in /readyz
            tasks.append(
                asyncio.create_task(runtime.doorbell.listen(runtime.wakes()), name="doorbell")
            )

    async def drain() -> None:
        begin_drain()
        remaining = deadline[0] - loop.time()
        waits = [runtime.verifier.finish(remaining)]
        waits.extend(finish_within(task, remaining) for task in tasks)
        await asyncio.gather(*waits)

    stack.push_async_callback(drain)
    return stop_claiming


async def finish_within(task: asyncio.Task[None], timeout: float) -> None:
    """Let `task` end by itself within `timeout` seconds, else cancel it; wait either way."""
    done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
