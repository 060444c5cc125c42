"""Deploy a ref from chat: `/release deploy <service> <ref> to <env>`.

A deploy from chat is a promotion whose source is a ref on the code host instead of a
release deployed in the environment before: the ref's commit becomes a release (named by the
tag when the ref looks like a version), its deployment into the environment waits at that
environment's gate exactly as a promotion does (a freeze holds it there; a `/release lock`
refuses it), and once the gate passes the environment's deployer is called to `promote`,
carrying the ref (`context["deploy_ref"]`) so it deploys that very branch or tag.

The release message is the summary: its risk comes first, then the commits since what runs
in the environment now (the assessment compares against the last version deployed there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from bot.domain.gates import refusal as refusals
from bot.domain.ingest import release_label
from bot.services import audit, deployments, freeze_gates
from bot.services.gates import REFUSED, Outcome
from bot.services.releases import DEPLOYED, lock_refusal
from bot.store.tables import Deployment

DEPLOYING = "promoted"  # shown with the same icon as a promotion
SOURCE_EVENT = "releasebot.deploy"
REF_CONTEXT = "deploy_ref"  # the gate's (and the deployer call's) context key for the ref

_LOOKS_LIKE_VERSION = re.compile(r"^v?\d+(\.\d+)*([-+.][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class ChatDeploy:
    """What a person asked to deploy: `ref` as typed, and the commit it names."""

    service: str
    environment: str
    ref: str
    sha: str
    actor: str

    @property
    def is_commit(self) -> bool:
        """The ref was (a prefix of) the commit's sha rather than a branch or tag name."""
        return self.sha.startswith(self.ref.lower())

    @property
    def label(self) -> str:
        """How it is named in a sentence: `v1.4.2 (abc1234)`, or the short sha."""
        return self.sha[:7] if self.is_commit else f"{self.ref} ({self.sha[:7]})"

    @property
    def version(self) -> str | None:
        """The version a tag such as `v1.4.2` names; a branch or a sha names none."""
        return self.ref if not self.is_commit and _LOOKS_LIKE_VERSION.match(self.ref) else None


def running(session: Session, *, service: str, environment: str) -> Deployment | None:
    """What runs in the environment now: its newest deployment that deployed."""
    return session.exec(
        select(Deployment)
        .where(Deployment.service == service)
        .where(Deployment.environment == environment)
        .where(col(Deployment.deployed_at).is_not(None))
        .where(col(Deployment.state).in_(DEPLOYED))
        .order_by(col(Deployment.deployed_at).desc(), col(Deployment.id).desc())
        .limit(1)
    ).first()


def deploy(session: Session, *, now: datetime, config: Config, asked: ChatDeploy) -> Outcome:
    """Start the deployment of `asked.sha` into the environment, through its gate."""
    refusal = _refusal(session, config=config, asked=asked)
    if refusal is not None:
        return Outcome(REFUSED, refusal)
    env = config.services[asked.service].environment(asked.environment)
    assert env is not None and env.deploy is not None
    now_running = running(session, service=asked.service, environment=asked.environment)
    context: dict[str, str] = {"on_approve": "promote"}
    if not asked.is_commit:
        context[REF_CONTEXT] = asked.ref
    event = DeployEvent(
        target=DeployTarget(
            provider="releasebot", service=asked.service, environment=asked.environment
        ),
        sha=asked.sha,
        status=states.PENDING,
        source_event=SOURCE_EVENT,
        external_id=f"deploy:{asked.sha[:12]}:{now.timestamp():.0f}",
        version=asked.version,
        ref=None if asked.is_commit else asked.ref,
        actor=asked.actor,
        description=f"deployed from chat: {asked.ref}",
        gate=GateRequest(decide_via=env.deploy.kind, context=context),
    )
    created, _ = deployments.apply_event(
        session,
        now=now,
        service=asked.service,
        environment=asked.environment,
        event=event,
        config=config,
    )
    assert created is not None
    audit.append(
        session,
        at=now,
        actor=asked.actor,
        action="release.deploy_requested",
        subject=f"deployment:{created.id}",
        details={
            "ref": asked.ref,
            "sha": asked.sha,
            "environment": asked.environment,
            "running": now_running.sha if now_running else None,
        },
    )
    told = _told(session, now, config, asked, gated=env.gate is not None, now_running=now_running)
    return Outcome(DEPLOYING, told, deployment_id=created.id)


def _told(
    session: Session,
    now: datetime,
    config: Config,
    asked: ChatDeploy,
    *,
    gated: bool,
    now_running: Deployment | None,
) -> str:
    """What the person reads: what goes where, since what, and what holds it."""
    told = f"deploying {asked.label} to {asked.environment}"
    if now_running is not None:
        since = release_label(now_running.sha, now_running.version)
        told += (
            f"; the release message shows its risk and the commits since {since}, "
            "which runs there now"
        )
    else:
        told += "; nothing ran there before: the release message shows its risk and commit"
    hold = freeze_gates.hold_for(
        session, now=now, config=config, service=asked.service, environment=asked.environment
    )
    if hold is not None and gated:
        told += f"; held at its gate: {hold.describe()}; approvals wait for the freeze to end"
    elif hold is not None:
        told += f"; held: {hold.held()}"
    elif gated:
        told += "; it waits at its gate"
    return told


def _refusal(session: Session, *, config: Config, asked: ChatDeploy) -> str | None:
    """Why this deploy may not start: a lock, no deploy section, or it runs or moves there."""
    env = config.services[asked.service].environment(asked.environment)
    if env is None or env.deploy is None:
        return refusals.no_deploy_section(asked.service, asked.environment).text
    locked = lock_refusal(session, service=asked.service, environment=asked.environment)
    if locked is not None:
        return locked
    latest = session.exec(
        select(Deployment)
        .where(Deployment.service == asked.service)
        .where(Deployment.environment == asked.environment)
        .where(Deployment.sha == asked.sha)
        .order_by(col(Deployment.id).desc())
    ).first()
    if latest is None or latest.state in states.FINISHED:
        return None
    now_running = running(session, service=asked.service, environment=asked.environment)
    if now_running is not None and now_running.sha == asked.sha:
        return refusals.Refusal(
            f"{asked.label} is what {asked.environment} runs now",
            "nothing to deploy: name another branch, tag or commit, or "
            + refusals.cmd(f"/release status {asked.service}"),
        ).text
    if latest.state in DEPLOYED:
        # It ran there before: going back to it is a rollback (which locks promotion).
        return refusals.Refusal(
            f"{asked.label} ran in {asked.environment} before",
            "go back to it with "
            + refusals.cmd(
                f"/release rollback {asked.service} {asked.environment} "
                f"to {latest.version or asked.sha[:7]} -- reason"
            ),
        ).text
    return refusals.under_way(asked.label, latest.state, asked.environment, asked.service).text
