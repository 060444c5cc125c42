"""The `flags` section of the evidence pack: every feature flag step taken from the
release's deployments, with who approved it, what the platform answered and the checks
that ran after it.

    flags   [{id, deployment_id, service, environment, flag, seq, kind: rollout|kill,
              percent, provider, status, requirement, progress, requested_by, created_at,
              decided_at, decided_by, reason (why it was rejected or expired),
              expires_at, delivered_at,
              receipt: {platform, status, ...} (the platform's answer, no secret),
              approvals: [{user_id, at}],
              checks: [{check_id, name, kind, runs: [{id, due_at, status, finished_at,
                                                      result}]}]}]

The audit records of each step (subject `flag_step:<id>`) are in the pack's `audit`.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from bot.services.evidence.sections import iso, jsonable
from bot.store.tables import Check, CheckRun, FlagApproval, FlagStep, FlagStepCheck


def steps_of(session: Session, deployment_ids: list[int]) -> list[FlagStep]:
    if not deployment_ids:
        return []
    return list(
        session.exec(
            select(FlagStep)
            .where(col(FlagStep.deployment_id).in_(deployment_ids))
            .order_by(col(FlagStep.id))
        ).all()
    )


def section(session: Session, steps: list[FlagStep]) -> list[dict[str, Any]]:
    """The documents of `steps`, oldest first."""
    ids = [s.id for s in steps if s.id is not None]
    if not ids:
        return []
    approvals: dict[int, list[FlagApproval]] = {}
    for approval in session.exec(
        select(FlagApproval)
        .where(col(FlagApproval.step_id).in_(ids))
        .order_by(col(FlagApproval.id))
    ):
        approvals.setdefault(approval.step_id, []).append(approval)
    checks: dict[int, list[dict[str, Any]]] = {}
    for link, check in session.exec(
        select(FlagStepCheck, Check)
        .join(Check, col(Check.id) == col(FlagStepCheck.check_id))
        .where(col(FlagStepCheck.step_id).in_(ids))
        .order_by(col(Check.id))
    ):
        runs = session.exec(
            select(CheckRun)
            .where(CheckRun.check_id == check.id)
            .order_by(col(CheckRun.due_at), col(CheckRun.id))
        ).all()
        checks.setdefault(link.step_id, []).append(
            {
                "check_id": check.id,
                "name": check.name,
                "kind": check.kind,
                "runs": [
                    {
                        "id": run.id,
                        "due_at": iso(run.due_at),
                        "status": run.status,
                        "finished_at": iso(run.finished_at),
                        "result": jsonable(run.result),
                    }
                    for run in runs
                ],
            }
        )
    return [
        _doc(step, approvals.get(step.id or 0, []), checks.get(step.id or 0, [])) for step in steps
    ]


def _doc(
    step: FlagStep, approvals: list[FlagApproval], checks: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": step.id,
        "deployment_id": step.deployment_id,
        "service": step.service,
        "environment": step.environment,
        "flag": step.flag,
        "seq": step.seq,
        "kind": step.kind,
        "percent": step.percent,
        "provider": step.provider,
        "status": step.status,
        "requirement": jsonable(step.requirement),
        "progress": step.progress,
        "requested_by": step.requested_by,
        "created_at": iso(step.created_at),
        "decided_at": iso(step.decided_at),
        "decided_by": step.decided_by,
        "reason": step.reason,
        "expires_at": iso(step.expires_at),
        "delivered_at": iso(step.delivered_at),
        "receipt": jsonable(step.receipt),
        "approvals": [{"user_id": a.user_id, "at": iso(a.created_at)} for a in approvals],
        "checks": checks,
    }
