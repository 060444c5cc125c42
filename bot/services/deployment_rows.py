"""Deployments as lists show them: one row per deployment with its version, risk level and
where its release message lives, read newest first down `ix_deployment_service_env_created`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session, col

from bot.domain.ingest import NamedRelease
from bot.store.tables import Deployment, Release, ReleaseMessage


@dataclass(frozen=True)
class DeploymentRow(NamedRelease):
    """One deployment as lists show it."""

    deployment_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    state: str
    deployer: str | None
    created_at: datetime
    updated_at: datetime
    ci_url: str | None
    risk_level: str | None
    channel: str | None = None  # where its release message lives, once posted
    ts: str | None = None


# A deployment's own version, else the one its release (sha) was first seen as.
VERSION: Final = sa.func.coalesce(col(Deployment.version), col(Release.version))
_COLUMNS: Final = (
    col(Deployment.id),
    col(Deployment.service),
    col(Deployment.environment),
    col(Deployment.sha),
    VERSION.label("version"),
    col(Deployment.state),
    col(Deployment.deployer),
    col(Deployment.created_at),
    col(Deployment.updated_at),
    col(Deployment.ci_url),
    col(Deployment.risk),
    col(ReleaseMessage.channel),
    col(ReleaseMessage.ts),
)


def row_query() -> Any:
    """Deployments with their release's version and their release message, as row values."""
    return (
        sa.select(*_COLUMNS)
        .join(Release, col(Release.id) == col(Deployment.release_id))
        .outerjoin(ReleaseMessage, col(ReleaseMessage.deployment_id) == col(Deployment.id))
    )


def deployment_rows(
    session: Session,
    *,
    service: str,
    environments: Sequence[str] | None,
    states_in: Iterable[str] | None = None,
    extra: Sequence[Any] = (),
    limit: int,
    offset: int = 0,
) -> list[DeploymentRow]:
    """A service's deployments, newest first, in some environments and states."""
    query = row_query().where(Deployment.service == service)
    if environments is not None and len(environments) == 1:
        query = query.where(Deployment.environment == environments[0])
    elif environments is not None:
        query = query.where(col(Deployment.environment).in_(list(environments)))
    if states_in is not None:
        query = query.where(col(Deployment.state).in_(sorted(states_in)))
    for condition in extra:
        query = query.where(condition)
    query = (
        query.order_by(col(Deployment.created_at).desc(), col(Deployment.id).desc())
        .limit(limit)
        .offset(offset)
    )
    return [to_row(tuple(r)) for r in session.execute(query).all()]


def to_row(values: tuple[Any, ...]) -> DeploymentRow:
    (
        deployment_id,
        service,
        environment,
        sha,
        version,
        state,
        deployer,
        created_at,
        updated_at,
        ci_url,
        risk,
        channel,
        ts,
    ) = values
    level = risk.get("level") if isinstance(risk, dict) else None
    return DeploymentRow(
        deployment_id=int(deployment_id),
        service=str(service),
        environment=str(environment),
        sha=str(sha),
        version=version,
        state=str(state),
        deployer=deployer,
        created_at=created_at,
        updated_at=updated_at,
        ci_url=ci_url,
        risk_level=str(level) if level else None,
        channel=channel,
        ts=ts,
    )


def first_row(rows: list[DeploymentRow]) -> DeploymentRow | None:
    return rows[0] if rows else None
