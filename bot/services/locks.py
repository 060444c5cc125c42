"""Locks typed in Slack: `/release lock <service> [env] -- reason` and `/release unlock`.

A lock placed here is the environment's one lock (`EnvironmentLock`), the same a rollback
places, holding more: while it stands every promotion into the environment (button,
`/release promote`, automatic) and every gate approval there is refused, naming the reason
and who locked it (`releases.lock_refusal`). Without an environment, every environment of
the service is locked (or unlocked). `/release unlock` lifts either kind.

Release managers and the service's owners (users or user groups) may lock and unlock; a
refusal is audited as `environment.lock_refused`. Locking and unlocking are audited as
`environment.locked` and `environment.unlocked`, and the release messages of the
environment are refreshed to show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.gates import refusal as refusals
from bot.domain.wording import join
from bot.services import audit, releases
from bot.services.gate_close import refresh_message
from bot.store.tables import Deployment, EnvironmentLock

LOCKED: Final = "locked"
UNLOCKED: Final = "unlocked"
REFUSED: Final = "refused"


@dataclass(frozen=True)
class LockOutcome:
    """What a lock or unlock did: `environments` are the ones it changed."""

    result: str  # locked | unlocked | refused
    message: str  # what to tell the person who typed the command
    service: str
    environments: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class LockInForce:
    """One locked environment, for App Home and the dashboard."""

    service: str
    environment: str
    reason: str
    locked_by: str
    locked_at: datetime
    holds: str
    everything: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "everything", self.holds == releases.ALL_CHANGES)


def lockers(config: Config, service: str) -> frozenset[str]:
    """Who may lock and unlock a service's environments: release managers and its owners."""
    svc = config.services.get(service)
    return frozenset({*config.slack.release_managers, *(svc.owners if svc else ())})


def place(
    session: Session,
    *,
    now: datetime,
    config: Config,
    service: str,
    environment: str | None,
    reason: str,
    actor: str,
    memberships: frozenset[str] = frozenset(),
) -> LockOutcome:
    """Lock one environment of `service`, or all of them, with a reason."""
    reason = reason.strip()
    targets, refusal = _targets(config, service, environment, actor, memberships, "lock")
    if refusal is None and not reason:
        where = f"{service} {environment}" if environment else service
        refusal = refusals.Refusal(
            "a lock needs a reason", f"say why: `/release lock {where} -- reason`"
        ).text
    if refusal is not None:
        _refused(session, now=now, actor=actor, service=service, why=refusal, what="lock")
        return LockOutcome(REFUSED, refusal, service)
    for env in targets:
        releases.lock(
            session,
            now=now,
            service=service,
            environment=env,
            actor=actor,
            reason=reason,
            holds=releases.ALL_CHANGES,
        )
        _refresh(session, now=now, service=service, environment=env)
    where = ", ".join(targets)
    return LockOutcome(
        LOCKED,
        f"{service} {where} locked: promotion and approvals are refused until unlocked ({reason})",
        service,
        tuple(targets),
        reason,
    )


def lift(
    session: Session,
    *,
    now: datetime,
    config: Config,
    service: str,
    environment: str | None,
    actor: str,
    memberships: frozenset[str] = frozenset(),
) -> LockOutcome:
    """Unlock one environment of `service`, or every locked one; a rollback's lock too."""
    targets, refusal = _targets(config, service, environment, actor, memberships, "unlock")
    if refusal is not None:
        _refused(session, now=now, actor=actor, service=service, why=refusal, what="unlock")
        return LockOutcome(REFUSED, refusal, service)
    lifted = [
        env
        for env in targets
        if releases.unlock(session, now=now, service=service, environment=env, actor=actor)
    ]
    if not lifted:
        told = refusals.Refusal(
            f"{environment} of {service} is not locked"
            if environment
            else f"no environment of {service} is locked",
            "nothing to unlock: promotion and approvals go ahead there",
        ).text
        return LockOutcome(REFUSED, told, service)
    for env in lifted:
        _refresh(session, now=now, service=service, environment=env)
    return LockOutcome(UNLOCKED, f"{service} {', '.join(lifted)} unlocked", service, tuple(lifted))


def in_force(session: Session) -> list[LockInForce]:
    """Every lock standing now, oldest first."""
    return [
        LockInForce(
            service=found.service,
            environment=found.environment,
            reason=found.reason,
            locked_by=found.locked_by,
            locked_at=found.locked_at,
            holds=found.holds,
        )
        for found in session.exec(
            select(EnvironmentLock).order_by(
                col(EnvironmentLock.locked_at), col(EnvironmentLock.service)
            )
        )
    ]


def _targets(
    config: Config,
    service: str,
    environment: str | None,
    actor: str,
    memberships: frozenset[str],
    what: str,
) -> tuple[list[str], str | None]:
    """(the environments a lock or unlock covers, why it is refused)."""
    svc = config.services.get(service)
    if svc is None:
        return [], refusals.unknown_name("service", service, sorted(config.services)).text
    allowed = lockers(config, service)
    if actor not in allowed and not memberships & allowed:
        return [], refusals.lockers_only(service, sorted(allowed), what, rules.slack_mention).text
    every = [env.name for env in svc.environments]
    if environment is None:
        return every, None
    if environment not in every:
        return [], refusals.Refusal(
            f"{service} has no environment '{environment}'",
            f"use {join([f'`{env}`' for env in every], 'or')}, or none for all of them",
        ).text
    return [environment], None


def _refused(
    session: Session, *, now: datetime, actor: str, service: str, why: str, what: str
) -> None:
    audit.append(
        session,
        at=now,
        actor=actor,
        action="environment.lock_refused",
        subject=f"service:{service}",
        details={"action": what, "reason": why},
    )


def _refresh(session: Session, *, now: datetime, service: str, environment: str) -> None:
    """Edit the release messages of the environment that a lock shows on: its newest
    deployment and every one still on its way."""
    for deployment in _shown(session, service, environment):
        refresh_message(session, now=now, deployment=deployment)


def _shown(session: Session, service: str, environment: str) -> Iterable[Deployment]:
    newest = session.exec(
        select(Deployment)
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
        .limit(1)
    ).all()
    active = session.exec(
        select(Deployment)
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .where(col(Deployment.state).not_in(states.FINISHED | {states.VERIFIED}))
    ).all()
    return {d.id: d for d in [*newest, *active]}.values()
