"""Read models for the slash command and App Home: status, history, pending approvals, and
the lookups that turn what someone typed (a version, a short sha, `latest`) into a deployment.

Every query walks an index: the latest deployment of one service and environment is one
step down `ix_deployment_service_env_created`; history pages with LIMIT/OFFSET on it (one
fetch more than the page says whether there is a next one); open gates come from the index
on `gate.status`. Nothing here writes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import gates as rules
from bot.domain import states
from bot.domain.gates import refusal as refusals
from bot.domain.promotion import PROMOTABLE, ROLLBACKABLE, promotion_sources
from bot.services import freezes, slo
from bot.services.deployment_rows import (
    VERSION,
    deployment_rows,
    first_row,
    row_query,
    to_row,
)
from bot.services.deployment_rows import DeploymentRow as DeploymentRow
from bot.services.gates import gate_principals
from bot.services.releases import versions_ran
from bot.store.tables import Approval, Deployment, EnvironmentLock, Gate

LATEST: Final = "latest"
# What runs in an environment: a deployed version, or one whose rollback the pipeline refused.
RUNNING: Final = frozenset(states.DEPLOYED | {states.ROLLBACK_FAILED})
MIN_SHA_PREFIX: Final = 4
MERGE_DEPTH: Final = 1000  # history across environments merges index walks up to this row
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class StatusRow:
    service: str
    environment: str
    latest: DeploymentRow | None  # the newest deployment, whatever its state
    running: DeploymentRow | None  # the newest one that is deployed (may be `latest`)
    freeze: str | None = None  # the reason of a freeze in force, if any
    lock: str | None = None  # why automatic promotion into it is stopped, if it is
    budget: str | None = None  # the service's error budget as last measured (with an slo)


@dataclass(frozen=True)
class HistoryPage:
    rows: list[DeploymentRow]
    offset: int
    has_more: bool


@dataclass(frozen=True)
class PendingApproval:
    gate_id: int
    deployment: DeploymentRow
    progress: str | None
    requirement: str | None  # "1 from S0RELMGRS", "blocked (critical risk): ..."
    opened_at: datetime
    expires_at: datetime | None
    can_act: bool  # the viewer belongs to one of its rules and has not decided yet


@dataclass(frozen=True)
class Found:
    """What a lookup found: a deployment (and for rollbacks the sha to restore), or why not."""

    deployment_id: int | None = None
    to_sha: str | None = None
    problem: str | None = None
    row: DeploymentRow | None = None


# --- status ----------------------------------------------------------------------------------


def status_pairs(config: Config, service: str | None = None) -> list[tuple[str, str]]:
    """(service, environment) in config order, for one service or all of them."""
    return [
        (name, env.name)
        for name, svc in config.services.items()
        if service is None or name == service
        for env in svc.environments
    ]


def status(
    session: Session, *, config: Config, now: datetime, pairs: Sequence[tuple[str, str]]
) -> list[StatusRow]:
    """What runs where, and what is on its way, for each (service, environment) asked."""
    in_force = freezes.listing(session, config=config, now=now)
    locks = {
        (lock.service, lock.environment): lock.reason
        for lock in session.exec(select(EnvironmentLock)).all()
    }
    found: list[StatusRow] = []
    budgets = {name: slo.latest_line(session, config, name) for name in {s for s, _ in pairs}}
    for service, environment in pairs:
        latest = first_row(
            deployment_rows(session, service=service, environments=(environment,), limit=1)
        )
        running = latest
        if latest is not None and latest.state not in RUNNING:
            running = first_row(
                deployment_rows(
                    session,
                    service=service,
                    environments=(environment,),
                    states_in=RUNNING,
                    limit=1,
                )
            )
        freeze = freezes.covering(in_force, environment, config.is_production(service, environment))
        found.append(
            StatusRow(
                service=service,
                environment=environment,
                latest=latest,
                running=running,
                freeze=freeze.reason if freeze else None,
                lock=locks.get((service, environment)),
                budget=budgets.get(service),
            )
        )
    return found


# --- history ---------------------------------------------------------------------------------


def history(
    session: Session,
    *,
    service: str,
    environment: str | None = None,
    limit: int = 10,
    offset: int = 0,
    environments: Sequence[str] | None = None,
) -> HistoryPage:
    """Deployments of a service (in one environment, or all), newest first, one page.

    Across environments, pass the service's `environments` (from the config): each one's
    newest rows come straight off the (service, environment, created_at) index and are
    merged here, instead of sorting every deployment the service ever had; deep pages
    (beyond MERGE_DEPTH rows) let the database sort.
    """
    if environment is None and environments and offset + limit + 1 <= MERGE_DEPTH:
        depth = offset + limit + 1
        merged = heapq.merge(
            *(
                deployment_rows(session, service=service, environments=(env,), limit=depth)
                for env in dict.fromkeys(environments)
            ),
            key=lambda row: (row.created_at, row.deployment_id),
            reverse=True,
        )
        rows = list(itertools.islice(merged, offset, depth))
    else:
        rows = deployment_rows(
            session,
            service=service,
            environments=(environment,) if environment else None,
            limit=limit + 1,
            offset=offset,
        )
    return HistoryPage(rows=rows[:limit], offset=offset, has_more=len(rows) > limit)


# --- pending approvals -----------------------------------------------------------------------


def approver_groups(config: Config) -> frozenset[str]:
    """Every user group any gate may ask (to resolve someone's memberships once)."""
    found: set[str] = set()
    for name, _, env in config.iter_environments():
        found.update(gate_principals(config, name, env.name))
    return frozenset(found)


def pending(
    session: Session,
    *,
    config: Config,
    user_id: str | None = None,
    memberships: frozenset[str] = frozenset(),
    only_actionable: bool = False,
) -> list[PendingApproval]:
    """Open gates, oldest first; `can_act` says whether `user_id` may still decide one."""
    query = (
        row_query()
        .add_columns(Gate)
        .join(Gate, col(Gate.deployment_id) == col(Deployment.id))
        .where(Gate.status == rules.PENDING)
        .order_by(col(Gate.created_at), col(Gate.id))
    )
    results = session.execute(query).all()
    decided: set[int] = set()
    if user_id is not None and results:
        gate_ids = [gate.id for *_, gate in results if gate.id is not None]
        decided = set(
            session.exec(
                select(Approval.gate_id)
                .where(Approval.user_id == user_id)
                .where(col(Approval.gate_id).in_(gate_ids))
            ).all()
        )
    member_map: Mapping[str, frozenset[str]] = {user_id: memberships} if user_id else {}
    found: list[PendingApproval] = []
    for *columns, gate in results:
        assert gate.id is not None
        row = to_row(tuple(columns))
        requirement = _requirement(config, gate, row)
        can_act = (
            user_id is not None
            and gate.id not in decided
            and requirement is not None
            and rules.can_fill_a_seat(requirement, user_id, member_map)
        )
        if only_actionable and not can_act:
            continue
        found.append(
            PendingApproval(
                gate_id=gate.id,
                deployment=row,
                progress=gate.progress,
                requirement=requirement.describe() if requirement else None,
                opened_at=gate.created_at,
                expires_at=gate.expires_at,
                can_act=can_act,
            )
        )
    return found


def _requirement(config: Config, gate: Gate, row: DeploymentRow) -> rules.Requirement | None:
    if gate.requirement:
        try:
            return rules.Requirement.from_dict(gate.requirement)
        except ValueError:
            pass
    svc = config.services.get(row.service)
    env = svc.environment(row.environment) if svc else None
    if env is None or env.gate is None:
        return None
    return rules.requirement_for(env.gate, row.risk_level)


# --- App Home --------------------------------------------------------------------------------


def owner_groups(config: Config) -> frozenset[str]:
    """Every user group listed as an owner of some service."""
    return frozenset(p for svc in config.services.values() for p in svc.owners if p.startswith("S"))


def owned_services(config: Config, user_id: str, memberships: frozenset[str]) -> list[str]:
    """Services whose `owners` list the user, or a user group they are in (config order)."""
    principals = memberships | {user_id}
    return [name for name, svc in config.services.items() if principals & set(svc.owners)]


def recent(session: Session, *, services: Sequence[str], limit: int = 10) -> list[DeploymentRow]:
    """The newest deployments of these services, newest first."""
    if not services:
        return []
    query = (
        row_query()
        .where(col(Deployment.service).in_(list(services)))
        .order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
        .limit(limit)
    )
    return [to_row(tuple(r)) for r in session.execute(query).all()]


# --- lookups for promote and rollback --------------------------------------------------------


def promote_source(
    session: Session, *, config: Config, service: str, version: str, target: str
) -> Found:
    """The deployment to promote into `target`: the one whose version or sha (prefix)
    matches in the environment before `target`, or with `latest` the newest deployed one."""
    svc = config.services.get(service)
    if svc is None:
        return Found(problem=refusals.unknown_name("service", service, list(config.services)).text)
    names = [e.name for e in svc.environments]
    if svc.environment(target) is None:
        return Found(problem=refusals.unknown_environment(service, target, names).text)
    sources = promotion_sources(svc, target)
    if not sources:
        targets = [n for n in names if promotion_sources(svc, n)]
        return Found(problem=refusals.promotes_from_ci(service, target, targets, version).text)
    where = " or ".join(sources)
    if version.lower() == LATEST:
        row = first_row(
            deployment_rows(
                session, service=service, environments=sources, states_in=PROMOTABLE, limit=1
            )
        )
        if row is None:
            return Found(problem=refusals.nothing_deployed("promote", service, where).text)
        return Found(deployment_id=row.deployment_id, row=row)
    matches = match(session, service=service, environments=sources, version=version)
    if isinstance(matches, str):
        return Found(problem=matches)
    if not matches:
        there = deployment_rows(
            session,
            service=service,
            environments=sources,
            extra=[col(Deployment.deployed_at).is_not(None)],
            limit=50,
        )
        told = refusals.version_not_there(
            service,
            version,
            where,
            versions=typed(there),
            example=f"/release promote {service} {{}} to {target}",
        )
        return Found(problem=told.text)
    promotable = [m for m in matches if m.state in PROMOTABLE]
    chosen = promotable[0] if promotable else matches[0]  # refused with its state, below
    return Found(deployment_id=chosen.deployment_id, row=chosen)


def rollback_target(
    session: Session,
    *,
    config: Config,
    service: str,
    environment: str,
    to_version: str | None = None,
) -> Found:
    """The deployment to roll back (the newest deployed one in the environment) and, when a
    version is named, the sha to restore (it must have run there before)."""
    svc = config.services.get(service)
    if svc is None:
        return Found(problem=refusals.unknown_name("service", service, list(config.services)).text)
    if svc.environment(environment) is None:
        names = [e.name for e in svc.environments]
        return Found(problem=refusals.unknown_environment(service, environment, names).text)
    current = first_row(
        deployment_rows(
            session,
            service=service,
            environments=(environment,),
            states_in=ROLLBACKABLE,
            limit=1,
        )
    )
    if current is None:
        return Found(problem=refusals.nothing_deployed("rollback", service, environment).text)
    if to_version is None:
        return Found(deployment_id=current.deployment_id, row=current)
    ran = match(session, service=service, environments=(environment,), version=to_version, ran=True)
    if isinstance(ran, str):
        return Found(problem=ran)
    if not ran or ran[0].sha == current.sha:
        others = versions_ran(session, service, environment, but=current.sha)
        if ran:
            told = refusals.runs_now(current.label, environment, service, others)
        else:
            told = refusals.version_not_there(
                service,
                to_version,
                environment,
                versions=others,
                example=f"/release rollback {service} {environment} to {{}} -- reason",
            )
            told = refusals.Refusal(
                f"{service} {to_version} never ran in {environment}", told.remedy
            )
        return Found(problem=told.text)
    return Found(deployment_id=current.deployment_id, to_sha=ran[0].sha, row=current)


def typed(rows: Sequence[DeploymentRow], limit: int = 5) -> list[str]:
    """Versions (else short shas) as people type them, newest first, each once."""
    return list(dict.fromkeys(r.version or r.short_sha for r in rows))[:limit]


def match(
    session: Session,
    *,
    service: str,
    environments: Sequence[str],
    version: str,
    ran: bool = False,
) -> list[DeploymentRow] | str:
    """Deployments whose version is `version` (with or without a leading "v") or
    whose sha starts with it, newest first (`ran`: only those that ran in the environment);
    a message when a sha prefix is ambiguous."""
    text = version.strip()
    deployed = [col(Deployment.deployed_at).is_not(None)] if ran else []
    names = {text, text[1:] if text[:1] in ("v", "V") else f"v{text}"}
    by_version = deployment_rows(
        session,
        service=service,
        environments=environments,
        extra=[VERSION.in_(sorted(names)), *deployed],
        limit=50,
    )
    if by_version:
        return by_version
    prefix = text.lower()
    if len(prefix) < MIN_SHA_PREFIX or not set(prefix) <= _HEX:
        return []
    by_sha = deployment_rows(
        session,
        service=service,
        environments=environments,
        extra=[col(Deployment.sha).startswith(prefix), *deployed],
        limit=50,
    )
    shas = list(dict.fromkeys(r.sha for r in by_sha))
    if len(shas) > 1:
        return refusals.ambiguous_sha(text, shas).text
    return by_sha
