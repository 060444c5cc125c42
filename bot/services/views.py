"""Read models for messages: everything a release message shows, read in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.config import Config
from bot.store.tables import Deployment, Release, ReleaseMessage


@dataclass(frozen=True)
class ReleaseView:
    deployment_id: int
    service: str
    environment: str
    sha: str
    version: str | None
    ref: str | None
    state: str
    attempt: int
    deployer: str | None
    ci_url: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    commits: list[dict[str, Any]] | None  # None: not assessed yet
    risk: dict[str, Any] | None  # None: not assessed yet
    channel: str | None  # where the message lives, once posted
    ts: str | None
    diff: dict[str, Any] | None = None  # additions, deletions, files, truncated, url
    assessment_note: str | None = None  # why the commit list is unavailable
    freeze: str | None = None  # the active change freeze for this environment, if any

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


def release_view(
    session: Session, deployment_id: int, *, config: Config | None = None
) -> ReleaseView | None:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.id is None:
        return None
    release = session.get(Release, deployment.release_id)
    message = session.get(ReleaseMessage, deployment.id)
    return ReleaseView(
        deployment_id=deployment.id,
        service=deployment.service,
        environment=deployment.environment,
        sha=deployment.sha,
        version=release.version if release else None,
        ref=release.ref if release else None,
        state=deployment.state,
        attempt=deployment.attempt,
        deployer=deployment.deployer,
        ci_url=deployment.ci_url,
        description=deployment.description,
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
        commits=release.commits if release else None,
        risk=deployment.risk,
        channel=message.channel if message else None,
        ts=message.ts if message else None,
        diff=release.diff if release else None,
        assessment_note=deployment.assessment_note,
        freeze=_freeze(config, deployment) if config else None,
    )


def _freeze(config: Config, deployment: Deployment) -> str | None:
    for freeze in config.freezes:
        if freeze.covers(deployment.environment) and freeze.active_at(deployment.updated_at):
            return f"{freeze.reason} (until {freeze.end.isoformat(timespec='minutes')})"
    return None


def save_message(
    session: Session, *, deployment_id: int, channel: str, ts: str, now: datetime
) -> None:
    """Remember where the release message is, so every later change edits it in place."""
    existing = session.get(ReleaseMessage, deployment_id)
    if existing is None:
        session.add(
            ReleaseMessage(deployment_id=deployment_id, channel=channel, ts=ts, posted_at=now)
        )
    else:
        existing.channel = channel
        existing.ts = ts
