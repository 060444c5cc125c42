"""After a flag step is approved: the change sent, the platform's receipt, the checks again.

A step's change goes out as a `FlagChange` outbox row; when the platform answers, its
receipt is audited (`flag.delivered`, the platform's own answer and no secret) and the
service's verify checks are planned again, due from that moment, as ordinary check runs
of the deployment (named "<check> · <flag> <N>%"), so the same scheduler claims and runs
them. `check_recorded` follows each result: a failure stops the release where it is (the
next step is not offered, on-call is called to the kill switch); when all pass, the next
step is offered, or taken at once by releasebot with `auto: true` (unless a freeze holds
the environment: automatic changes never pass a freeze).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import flags as rules
from bot.domain.errors import ConcurrentUpdate
from bot.domain.messages import ReleaseMessageUpdate, TemplateLine
from bot.services import audit, freeze_gates, outbox, verification
from bot.store.tables import Check, CheckRun, FlagStep, FlagStepCheck, row_id

TEMPLATE = "flag_change.txt.j2"
RELEASEBOT = "releasebot"


def lock_step(session: Session, step: FlagStep) -> None:
    """Bump the step's row version, or fail if someone else did first (the write retries)."""
    updated = session.execute(
        sa.update(FlagStep)
        .where(col(FlagStep.id) == step.id)
        .where(col(FlagStep.row_version) == step.row_version)
        .values(row_version=step.row_version + 1)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate(f"flag step {step.id} changed underneath")
    session.refresh(step)


def tell(
    session: Session,
    *,
    now: datetime,
    deployment_id: int,
    icon: str,
    text: str,
    by: str | None = None,
    mention: Iterable[str] = (),
) -> None:
    """A line in the release message's thread (`mention`: who is called first, `by`: who
    did it), and the message edited to show where the flag stands."""
    fields = {"icon": icon, "text": text, "by": by, "mention": list(mention)}
    outbox.enqueue(session, TemplateLine(deployment_id, TEMPLATE, fields), now=now)
    outbox.enqueue(session, ReleaseMessageUpdate(deployment_id), now=now)


def send(session: Session, *, now: datetime, step: FlagStep, actor: str, reason: str) -> None:
    """The step is approved (or taken automatically): queue the change for the platform."""
    step.status = rules.SENDING
    step.decided_at = now
    step.decided_by = actor
    step.progress = reason[:1000]
    session.add(step)
    audit.append(
        session,
        at=now,
        actor=actor,
        action="flag.step_approved",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent, "reason": reason},
    )
    change = rules.FlagChange(
        step_id=row_id(step),
        deployment_id=step.deployment_id,
        service=step.service,
        flag=step.flag,
        provider=step.provider,
        action="rollout",
        percent=step.percent,
    )
    automatic = actor == RELEASEBOT
    line = f"{change.describe()}: sending to {step.provider}, approved"
    tell(
        session,
        now=now,
        deployment_id=step.deployment_id,
        icon=":triangular_flag_on_post:",
        text=f"{line} automatically: {reason}" if automatic else line,
        by=None if automatic else actor,
    )
    outbox.enqueue(session, change, now=now)


def stop(session: Session, *, now: datetime, step: FlagStep, reason: str) -> None:
    """Close a pending step's gate, or cancel the checks still due after a step."""
    if step.status not in (rules.PENDING, rules.VERIFYING):
        return
    lock_step(session, step)
    _cancel_runs(session, now=now, step=step, reason=reason)
    step.status = rules.CANCELLED
    step.progress = reason
    session.add(step)


# --- the platform's answer -------------------------------------------------------------------


def delivered(
    session: Session,
    *,
    now: datetime,
    config: Config,
    change: rules.FlagChange,
    receipt: Mapping[str, Any],
) -> None:
    """The platform took the change: audit its receipt, then verify (or, the kill switch,
    record the flag off)."""
    step = session.get(FlagStep, change.step_id)
    if step is None or step.status != rules.SENDING:
        return
    lock_step(session, step)
    step.delivered_at = now
    step.receipt = dict(receipt)
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="flag.delivered",
        subject=f"flag_step:{row_id(step)}",
        details={**change.to_payload(), "receipt": dict(receipt)},
    )
    if change.action == "off":
        step.status = rules.OFF
        session.add(step)
        text = f"{change.flag} is off on {change.provider}: nobody is served it now"
        tell(session, now=now, deployment_id=step.deployment_id, icon=":octagonal_sign:", text=text)
        return
    planned = _plan(session, now=now, config=config, step=step)
    step.status = rules.VERIFYING if planned else rules.PASSED
    session.add(step)
    if planned:
        text = (
            f"{change.describe()} on {change.provider}: "
            f"{planned} checks run again before the next step"
        )
        tell(session, now=now, deployment_id=step.deployment_id, icon=":mag:", text=text)
        return
    text = f"{change.describe()} on {change.provider} (no checks to run)"
    tell(session, now=now, deployment_id=step.deployment_id, icon=":white_check_mark:", text=text)
    _after_passing(session, now=now, config=config, step=step)


def undelivered(
    session: Session, *, now: datetime, config: Config, change: rules.FlagChange, reason: str
) -> None:
    """The platform refused the change for good (a refused key, a missing flag): audited;
    the step may be asked for again."""
    step = session.get(FlagStep, change.step_id)
    if step is None or step.status != rules.SENDING:
        return
    lock_step(session, step)
    step.status = rules.UNDELIVERED
    step.progress = reason[:1000]
    session.add(step)
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="flag.failed",
        subject=f"flag_step:{row_id(step)}",
        details={**change.to_payload(), "reason": reason[:500]},
    )
    text = f"{change.describe()} was not applied by {change.provider}: {reason}"
    tell(
        session,
        now=now,
        deployment_id=step.deployment_id,
        icon=":warning:",
        text=text,
        mention=config.slack.oncall,
    )


# --- the checks after a step -----------------------------------------------------------------


def _plan(session: Session, *, now: datetime, config: Config, step: FlagStep) -> int:
    """The environment's verify checks again, due from now, linked to the step."""
    service = config.services.get(step.service)
    env = service.environment(step.environment) if service is not None else None
    if env is None or not env.verify:
        return 0
    count = 0
    for spec in env.verify:
        check = Check(
            deployment_id=step.deployment_id,
            name=f"{spec.name} · {step.flag} {step.percent}%"[:100],
            kind=spec.kind,
            spec=spec.model_dump(mode="json"),
        )
        session.add(check)
        session.flush()
        session.add(FlagStepCheck(check_id=row_id(check), step_id=row_id(step)))
        for offset in spec.at:
            session.add(
                CheckRun(
                    check_id=row_id(check),
                    deployment_id=step.deployment_id,
                    due_at=now + offset,
                    status=verification.PENDING,
                )
            )
            count += 1
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="flag.checks_planned",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent, "runs": count},
    )
    return count


def _runs(session: Session, step: FlagStep) -> sa.Select[Any]:
    checks = select(FlagStepCheck.check_id).where(FlagStepCheck.step_id == row_id(step))
    return sa.select(CheckRun).where(col(CheckRun.check_id).in_(checks))


def _cancel_runs(session: Session, *, now: datetime, step: FlagStep, reason: str) -> None:
    checks = select(FlagStepCheck.check_id).where(FlagStepCheck.step_id == row_id(step))
    session.execute(
        sa.update(CheckRun)
        .where(col(CheckRun.check_id).in_(checks))
        .where(col(CheckRun.status).in_((verification.PENDING, verification.RUNNING)))
        .values(status=verification.CANCELLED, finished_at=now, result={"summary": reason})
        .execution_options(synchronize_session=False)
    )


def check_recorded(session: Session, *, now: datetime, config: Config, run_id: int) -> None:
    """A check result was stored: when it is one planned after a flag step, move the step
    on (failed at the first failure, passed when every run passed)."""
    run = session.get(CheckRun, run_id)
    link = session.get(FlagStepCheck, run.check_id) if run is not None else None
    if run is None or link is None:
        return
    step = session.get(FlagStep, link.step_id)
    if step is None or step.status != rules.VERIFYING:
        return
    lock_step(session, step)
    check = session.get(Check, run.check_id)
    name = check.name if check is not None else "a check"
    if run.status == verification.FAILED:
        summary = str((run.result or {}).get("summary") or "")
        _failed(session, now=now, config=config, step=step, check=name, summary=summary)
        return
    left = [r for (r,) in session.execute(_runs(session, step)) if r.status in _UNFINISHED]
    if left:
        return
    step.status = rules.PASSED
    session.add(step)
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="flag.checks_passed",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent},
    )
    text = f"{step.flag} at {step.percent}%: every check passed"
    tell(session, now=now, deployment_id=step.deployment_id, icon=":white_check_mark:", text=text)
    _after_passing(session, now=now, config=config, step=step)


_UNFINISHED = (verification.PENDING, verification.RUNNING)


def _failed(
    session: Session, *, now: datetime, config: Config, step: FlagStep, check: str, summary: str
) -> None:
    _cancel_runs(session, now=now, step=step, reason=f"{check} failed")
    step.status = rules.FAILED
    step.progress = f"{check} failed: {summary}"[:1000]
    session.add(step)
    audit.append(
        session,
        at=now,
        actor=RELEASEBOT,
        action="flag.checks_failed",
        subject=f"flag_step:{row_id(step)}",
        details={"flag": step.flag, "percent": step.percent, "check": check, "summary": summary},
    )
    text = (
        f"checks failed after {step.flag} went to {step.percent}%: {check}: {summary}. "
        "The next step is not offered; use Kill switch on the release message to turn it off."
    )
    tell(
        session,
        now=now,
        deployment_id=step.deployment_id,
        icon=":rotating_light:",
        text=text,
        mention=config.slack.oncall,
    )


def _after_passing(session: Session, *, now: datetime, config: Config, step: FlagStep) -> None:
    """With `auto: true`, take the next step at once (a freeze holds it for people)."""
    service = config.services.get(step.service)
    settings = service.release.flag(step.flag) if service and service.release else None
    upcoming = rules.step_after(settings.steps, step.percent) if settings is not None else None
    if settings is None or not settings.auto or upcoming is None:
        return
    hold = freeze_gates.hold_for(
        session,
        now=now,
        config=config,
        service=step.service,
        environment=step.environment,
        break_glass=False,
    )
    if hold is not None:
        text = f"{step.flag} → {upcoming}% not taken automatically: {hold.environment} is frozen"
        tell(session, now=now, deployment_id=step.deployment_id, icon=":snowflake:", text=text)
        return
    following = FlagStep(
        deployment_id=step.deployment_id,
        service=step.service,
        environment=step.environment,
        flag=step.flag,
        seq=step.seq + 1,
        kind=rules.ROLLOUT,
        percent=upcoming,
        provider=step.provider,
        status=rules.PENDING,
        requirement=step.requirement,
        requested_by=RELEASEBOT,
        created_at=now,
    )
    session.add(following)
    session.flush()
    send(
        session,
        now=now,
        step=following,
        actor=RELEASEBOT,
        reason=f"auto: the checks after {step.percent}% passed",
    )
