"""Readiness: the database answers, migrations are current, nothing is stuck in the outbox.

The report keeps its first fields (`ready`, `reason`, `migration`, `outbox`) and adds
`dependencies`, one entry per thing the bot depends on with `ok` and what was seen, and
`down`, the names of those that are not ok. Only the database and the migrations make the
bot unready: dead outbox rows (messages given up on, usually a Slack or provider setting)
are named in `down` but a restart or a replica less would not send them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext

from bot.metrics import Metrics
from bot.services import applier, outbox
from bot.store.db import Database


def readiness(db: Database, *, expected_head: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"ready": False}
    dependencies: dict[str, dict[str, Any]] = {}
    report["dependencies"] = dependencies
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        report["reason"] = f"database unreachable: {type(exc).__name__}"
        dependencies["database"] = {"ok": False, "error": type(exc).__name__}
        return _with_down(report)
    dependencies["database"] = {"ok": True}
    report["migration"] = current
    dependencies["migrations"] = {
        "ok": current == expected_head,
        "current": current,
        "expected": expected_head,
    }
    if current != expected_head:
        report["reason"] = (
            f"database schema is at {current or 'nothing'}, expected {expected_head}: "
            "run `releasebot db upgrade`"
        )
        return _with_down(report)
    with db.read() as session:
        backlog = outbox.backlog(session)
    report["outbox"] = {
        "pending": backlog.pending,
        "dead": backlog.dead,
        "oldest_pending": backlog.oldest_pending.isoformat() if backlog.oldest_pending else None,
    }
    dependencies["outbox"] = {"ok": backlog.dead == 0, "dead": backlog.dead}
    with db.read() as session:
        stored = applier.backlog(session)
    # Deliveries that failed to apply are named (degraded), as dead outbox rows are.
    dependencies["deliveries"] = {
        "ok": stored.failed == 0 and stored.retrying == 0,
        "pending": stored.pending,
        "retrying": stored.retrying,
        "failed": stored.failed,
        "oldest_pending": stored.oldest_pending.isoformat() if stored.oldest_pending else None,
    }
    report["ready"] = True
    return _with_down(report)


def _with_down(report: dict[str, Any]) -> dict[str, Any]:
    report["down"] = sorted(name for name, seen in report["dependencies"].items() if not seen["ok"])
    return report


def refresh_gauges(db: Database, metrics: Metrics) -> None:
    with db.read() as session:
        backlog = outbox.backlog(session)
    metrics.outbox_backlog.set(backlog.pending)
    metrics.outbox_dead.set(backlog.dead)
    with db.read() as session:
        stored = applier.backlog(session)
    metrics.deliveries.labels("pending").set(stored.pending)
    metrics.deliveries.labels("retrying").set(stored.retrying)
    metrics.deliveries.labels("failed").set(stored.failed)
