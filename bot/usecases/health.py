"""Readiness (`/readyz`) and the Prometheus exposition (`/metrics`)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import generate_latest

from bot.services import health
from bot.usecases.context import Context


async def readiness(ctx: Context) -> dict[str, Any]:
    """The database answers, migrations are current, nothing is stuck in the outbox; which
    dependency is down, if any (see `bot.services.health`)."""
    report = await asyncio.to_thread(health.readiness, ctx.db, expected_head=ctx.migrations_head)
    # A link to the outside that is down is named in `down`; the bot stays ready, since
    # webhooks are still stored and everything queued is sent once the link is back.
    for name, state in ctx.links.items():
        report["dependencies"][name] = state()
    _with_spool(ctx, report)
    report["down"] = sorted(n for n, seen in report["dependencies"].items() if not seen["ok"])
    ctx.metrics.ready.set(1 if report["ready"] else 0)
    return report


def _with_spool(ctx: Context, report: dict[str, Any]) -> None:
    """What the local spool holds. While the database alone is unreachable and the spool
    has room, the replica stays ready: webhooks are still answered (held in the spool),
    so a load balancer keeps sending them here rather than answering 503 itself."""
    spool = ctx.spool
    if spool is None:
        return
    room = spool.count < spool.limit
    ctx.metrics.spool_held.set(spool.count)
    report["dependencies"]["spool"] = {"ok": room, "held": spool.count, "limit": spool.limit}
    reason = str(report.get("reason", ""))
    if not report["ready"] and reason.startswith("database unreachable") and room:
        report["ready"] = True
        report["reason"] = reason + "; webhooks are held in this replica's spool until it is back"


async def metrics_exposition(ctx: Context) -> bytes:
    """Every metric in Prometheus' text format, with readiness and the outbox gauges read
    just now."""
    report = await readiness(ctx)
    # Else the outbox gauges keep their last values (releasebot_ready is 0, or the database
    # is down while the spool takes webhooks).
    if report["ready"] and report["dependencies"]["database"]["ok"]:
        await asyncio.to_thread(health.refresh_gauges, ctx.db, ctx.metrics)
    return bytes(generate_latest(ctx.metrics.registry))
