"""Error budgets as releasebot last measured them, and asking for a new measurement.

Each measurement is an audit record (`slo.measured`, subject `slo:<service>`, the budget as
its details), so the budget a gate or an automatic promotion went by is in the trail:

    slo.request(session, now=now, service="checkout", promote=deployment.id)  # outbox row
    slo.record(session, now=now, budget=budget)          # the worker's answer, audited
    slo.latest(session, "checkout")                      # Budget | None
    slo.gate_budget(session, config, deployment)         # measured since its gate opened
    slo.promotion_refusal(session, now=now, config=config, service="checkout")

A gate with `by_error_budget` waits for a measurement taken after it opened; automatic
promotion of a service with an `slo:` is decided only after a fresh one (`reactions`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain.gates import PENDING
from bot.domain.slo import Budget, MeasureBudget
from bot.services import audit, outbox
from bot.store.tables import AuditEvent, Deployment, Gate

MEASURED = "slo.measured"
FRESH_FOR = timedelta(minutes=15)
"""How long a measurement stands for automatic promotion; older is as good as unknown."""


def subject(service: str) -> str:
    return f"slo:{service}"


def has_slo(config: Config, service: str) -> bool:
    found = config.services.get(service)
    return found is not None and found.slo is not None


def request(session: Session, *, now: datetime, service: str, promote: int | None = None) -> None:
    """Queue a measurement of the service's budget (and, with `promote`, the automatic
    promotion of that deployment once it is known)."""
    outbox.enqueue(session, MeasureBudget(service, promote), now=now)


def record(session: Session, *, now: datetime, budget: Budget) -> None:
    """Keep one measurement (known or unknown) as an audit record."""
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action=MEASURED,
        subject=subject(budget.service),
        details=budget.to_dict(),
    )


def latest(session: Session, service: str) -> Budget | None:
    """The newest measurement of the service's budget, or None."""
    found = session.exec(
        select(AuditEvent.details)
        .where(AuditEvent.subject == subject(service))
        .where(AuditEvent.action == MEASURED)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()
    return Budget.from_dict(json.loads(found)) if found is not None else None


def latest_line(session: Session, config: Config, service: str) -> str | None:
    """The service's budget in one line, with when it was measured (it is read again only
    before a gate or a promotion), for messages and pages; None without an slo."""
    if not has_slo(config, service):
        return None
    budget = latest(session, service)
    if budget is None:
        return "error budget not measured yet"
    if budget.measured_at is None:
        return budget.describe()
    at = datetime.fromisoformat(budget.measured_at).astimezone(UTC)
    return f"{budget.describe()} · measured {at:%Y-%m-%d %H:%M} UTC"


def measured_since(session: Session, service: str, moment: datetime) -> Budget | None:
    """The newest measurement when it was taken at or after `moment`, else None."""
    budget = latest(session, service)
    if budget is None or budget.measured_at is None:
        return None
    return budget if datetime.fromisoformat(budget.measured_at) >= moment else None


def gate_budget(session: Session, config: Config, deployment: Deployment) -> Budget | None:
    """The budget the deployment's gate goes by: measured since the gate opened; None while
    that measurement is still to come."""
    assert deployment.id is not None
    gate = session.exec(
        select(Gate).where(Gate.deployment_id == deployment.id).order_by(col(Gate.id).desc())
    ).first()
    since = gate.created_at if gate is not None else deployment.created_at
    return measured_since(session, deployment.service, since)


def promotion_refusal(
    session: Session, *, now: datetime, config: Config, service: str
) -> str | None:
    """Why automatic promotion must wait for the service's budget: exhausted, or unknown
    (not measured in the last `FRESH_FOR`, or Prometheus did not answer). None: go on."""
    if not has_slo(config, service):
        return None
    budget = measured_since(session, service, now - FRESH_FOR)
    if budget is None:
        return f"{service}'s error budget was not measured in the last 15 minutes"
    if not budget.known:
        return (
            f"{service}'s error budget is unknown ({budget.reason}); automatic promotion "
            "waits while it cannot be measured"
        )
    if budget.exhausted:
        return (
            f"{service}'s error budget is exhausted: {budget.describe()}; automatic "
            "promotion waits until it recovers"
        )
    return None


def waiting_for(session: Session, service: str) -> list[Deployment]:
    """The deployments of the service whose gate is pending (to settle after a measurement)."""
    return list(
        session.exec(
            select(Deployment)
            .join(Gate, col(Gate.deployment_id) == col(Deployment.id))
            .where(Deployment.service == service)
            .where(Gate.status == PENDING)
        ).all()
    )
