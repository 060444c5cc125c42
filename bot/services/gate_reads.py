"""What gate decisions read: the environment's gate policy, who may decide, the people
behind a release, what a gate needs now, and a deployment's gates and approvers."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Config, Environment
from bot.domain import gates as rules
from bot.services import slo
from bot.services.people import release_people as release_people
from bot.store import statements as sql
from bot.store.tables import Deployment, Gate


def environment_of(config: Config, deployment: Deployment) -> Environment | None:
    return environment_at(config, deployment.service, deployment.environment)


def environment_at(config: Config, service: str, environment: str) -> Environment | None:
    found = config.services.get(service)
    return found.environment(environment) if found else None


def gate_principals(config: Config, service: str, environment: str) -> frozenset[str]:
    """Every user group a decision on this environment's gates may need resolving."""
    svc = config.services.get(service)
    env = svc.environment(environment) if svc else None
    found: set[str] = set()
    if env is not None and env.gate is not None:
        for rule in env.gate.require:
            found.update(rule.approvers)
        for risk_gate in env.gate.by_risk.values():
            for rule in risk_gate.require or ():
                found.update(rule.approvers)
    if config.break_glass is not None:
        found.update(config.break_glass.approvers)
    return frozenset(p for p in found if p.startswith("S"))


def memberships_from(
    group_members: Mapping[str, frozenset[str]], users: set[str]
) -> dict[str, frozenset[str]]:
    return {
        user: frozenset(g for g, members in group_members.items() if user in members)
        for user in users
    }


def requirement(
    session: Session, config: Config, deployment: Deployment
) -> rules.Requirement | None:
    """What the gate needs now; None until the risk is known, and with `by_error_budget`
    until the error budget was measured since the gate opened (the decision waits).

    A release that could not be read in full is never approved automatically: its gate
    asks people instead (`rules.asked_of_people`)."""
    env = environment_of(config, deployment)
    if env is None or env.gate is None:
        return None
    level = deployment.risk.get("level") if deployment.risk else None
    if level is None:
        return None
    budget = None
    if env.gate.by_error_budget is not None:
        budget = slo.gate_budget(session, config, deployment)
        if budget is None:
            return None
    return rules.asked_of_people(rules.requirement_for(env.gate, level, budget), unread(deployment))


def unread(deployment: Deployment) -> str | None:
    """Why the release could not be read in full, as its risk assessment recorded it, or None."""
    found = deployment.risk.get("unknown") if deployment.risk else None
    return str(found) if found else None


def not_automatic(config: Config, deployment: Deployment) -> str | None:
    """Why the gate asks people though its `by_risk` approves some risk level by itself,
    when the release could not be read in full ("not approved automatically: the changes
    could not be read: ..."), or None."""
    env = environment_of(config, deployment)
    why = unread(deployment)
    if env is None or env.gate is None or why is None:
        return None
    if not any(level.auto_approve for level in env.gate.by_risk.values()):
        return None
    return rules.not_automatic_note(why)


def scope(session: Session, gate_id: int) -> tuple[str, str] | None:
    """(service, environment) of a gate."""
    session.flush()  # what the ORM would flush before loading the gate
    found = session.connection().execute(sql.GATE_SCOPE, {"gate_id": gate_id}).first()
    return (found.service, found.environment) if found is not None else None


# Loaded only when `sql.ANY_PENDING_GATE` found one.
_PENDING_GATE = (
    select(Gate)
    .where(col(Gate.deployment_id) == sa.bindparam("deployment_id"))
    .where(col(Gate.status) == rules.PENDING)
    .order_by(col(Gate.id).desc())
)


def pending_gate(session: Session, deployment_id: int) -> Gate | None:
    params = {"deployment_id": deployment_id}
    session.flush()  # what the ORM query would flush first (a gate added just now)
    if session.connection().execute(sql.ANY_PENDING_GATE, params).first() is None:
        return None
    return session.exec(_PENDING_GATE, params=params).first()


def latest_gate(session: Session, deployment_id: int) -> Gate | None:
    return session.exec(
        select(Gate).where(Gate.deployment_id == deployment_id).order_by(col(Gate.id).desc())
    ).first()


def approvers_of(session: Session, gate_id: int) -> list[str]:
    session.flush()  # what the ORM query would flush first (an approval added just now)
    return list(session.connection().execute(sql.GATE_APPROVERS, {"gate_id": gate_id}).scalars())
