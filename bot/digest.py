"""The weekly DORA digest: an APScheduler cron job posting last week's metrics to Slack.

    register_digest(scheduler, runtime)   # once, beside bot.scheduling.register_jobs

It fires on `RELEASEBOT_DIGEST_DAY` (default mon) at `RELEASEBOT_DIGEST_HOUR`:00 UTC
(default 9), computes the 7-day report (overall and every configured service) and queues
one outbox row of kind `slack.digest` with `{"channel", "text", "blocks"}` for the
configured `slack.default_channel`; the outbox worker posts it. Every replica runs the job,
and only the first queues the week's digest (`dora.enqueue_digest`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.runtime import Runtime
from bot.services import dora
from bot.store.db import Database

log = logging.getLogger(__name__)

DIGEST_JOB_ID = "dora.weekly_digest"
DIGEST_DAYS = 7
MISFIRE_GRACE_SECONDS = 3600  # a replica busy or restarting at the hour still posts it


def _compute(db: Database, *, now: datetime, services: list[str]) -> dora.MetricsMessage:
    with db.read() as session:
        return dora.digest(session, now=now, services=services, days=DIGEST_DAYS)


async def weekly_digest(runtime: Runtime) -> bool:
    """Compute the digest (read-only) and queue it for the default channel.

    The report is read outside the write transaction, so SQLite's writer is not held while
    it is computed. True when this call queued the digest.
    """
    now = runtime.clock.now()
    services = sorted(runtime.config.services)
    channel = runtime.config.slack.default_channel
    message = await asyncio.to_thread(_compute, runtime.db, now=now, services=services)
    queued = await asyncio.to_thread(
        runtime.db.write,
        lambda s: dora.enqueue_digest(s, now=now, channel=channel, digest_message=message),
    )
    if queued:
        log.info("weekly DORA digest queued for %s", channel)
        runtime.worker.wake()
    else:
        log.info("weekly DORA digest already queued by another replica")
    return queued


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
