"""Skipping verification in an emergency: an approver of the environment, with a reason.

The deployment's pending checks are cancelled, each keeping who skipped them and why (the
release message shows it), and it moves to `verified` at once. Nothing follows from a
skipped verification: no rollback by policy (no check is left to fail), no automatic
promotion (nothing was verified to promote on), and no alert is resolved (nothing showed
the service healthy). DORA counts it as the deployment it is. Audited as
`verification.skipped`; a refusal as `release.action_refused`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.gates import refusal as refusals
from bot.domain.ingest import revision_label
from bot.domain.messages import TemplateLine
from bot.services import audit, outbox, verification
from bot.services.gates import REFUSED, Outcome
from bot.services.transitions import transition
from bot.store.tables import CheckRun, Deployment

ACTION = "skip verification"
SKIPPED = "skipped"
REASON_MAX = 500


def approvers(config: Config, service: str, environment: str) -> frozenset[str]:
    """Who may skip: the approvers the environment's gate names (every rule, every risk
    level); without a gate, the release managers and the service's owners."""
    svc = config.services.get(service)
    env = svc.environment(environment) if svc else None
    found: set[str] = set()
    if env is not None and env.gate is not None:
        for rule in env.gate.require:
            found.update(rule.approvers)
        for risk_gate in env.gate.by_risk.values():
            for rule in risk_gate.require or ():
                found.update(rule.approvers)
    if not found:
        found.update(config.slack.release_managers)
        found.update(svc.owners if svc else ())
    return frozenset(found)


def skip(
    session: Session,
    *,
    now: datetime,
    config: Config,
    deployment_id: int,
    user_id: str,
    memberships: frozenset[str],
    reason: str,
) -> Outcome:
    """Skip the rest of one deployment's verification (module doc), or say why not."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        return Outcome(REFUSED, refusals.unknown_deployment().text)
    allowed = approvers(config, deployment.service, deployment.environment)
    reason = reason.strip()
    why_not = _why_not(deployment, allowed, user_id, memberships, reason)
    if why_not is not None:
        audit.append(
            session,
            at=now,
            actor=user_id,
            action="release.action_refused",
            subject=f"deployment:{deployment_id}",
            details={"action": "skip_verification", "reason": why_not},
        )
        return Outcome(REFUSED, why_not, deployment_id=deployment_id)
    reason = reason[:REASON_MAX]
    cancelled = _cancel_runs(session, now=now, deployment=deployment, user_id=user_id, why=reason)
    transition(
        session,
        deployment=deployment,
        target=states.VERIFIED,
        now=now,
        actor=user_id,
        source="skip_verification",
        note=f"verification skipped: {reason}",
    )
    audit.append(
        session,
        at=now,
        actor=user_id,
        action="verification.skipped",
        subject=f"deployment:{deployment_id}",
        details={"reason": reason, "cancelled_runs": cancelled},
    )
    line = TemplateLine(
        deployment_id,
        "verification_skipped.txt.j2",
        {"by": user_id, "reason": reason, "cancelled": cancelled},
    )
    outbox.enqueue(session, line, now=now)
    return Outcome(
        SKIPPED,
        f"verification of {deployment.service} "
        f"{revision_label(deployment.sha, deployment.version)} in "
        f"{deployment.environment} skipped; it counts as verified",
        deployment_id=deployment_id,
    )


def _why_not(
    deployment: Deployment,
    allowed: frozenset[str],
    user_id: str,
    memberships: frozenset[str],
    reason: str,
) -> str | None:
    if user_id not in allowed and not memberships & allowed:
        return refusals.not_allowed(
            allowed, action=ACTION, subject=deployment.service, mention=rules.slack_mention
        ).text
    if not reason:
        return "a reason is required to skip verification"
    if deployment.state != states.VERIFYING:
        return (
            f"only a deployment being verified can skip verification; "
            f"this one is {deployment.state.replace('_', ' ')}"
        )
    return None


def _cancel_runs(
    session: Session, *, now: datetime, deployment: Deployment, user_id: str, why: str
) -> int:
    """Cancel the pending and running checks, each keeping who skipped them and why."""
    session.flush()
    result: dict[str, Any] = {
        "summary": f"verification skipped: {why}",
        "skipped_by": user_id,
        "reason": why,
    }
    cancelled = session.execute(
        sa.update(CheckRun)
        .where(col(CheckRun.deployment_id) == deployment.id)
        .where(col(CheckRun.status).in_((verification.PENDING, verification.RUNNING)))
        .values(status=verification.CANCELLED, finished_at=now, result=result)
        .execution_options(synchronize_session=False)
    )
    return int(cancelled.rowcount)  # type: ignore[attr-defined]
