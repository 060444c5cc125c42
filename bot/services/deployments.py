"""Applying CI events: releases, deployments and their state changes.

Every state change goes through `transition`, which checks the table of legal moves, updates
the row only if nobody else did first (row_version), and writes the audit record and the
outbox rows in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain import states
from bot.domain.errors import InvalidRequest
from bot.domain.events import DeployEvent
from bot.domain.gates import decisions as gate_rules
from bot.domain.gates.pipeline import left_waiting, pipeline_close
from bot.domain.ingest import revision_label
from bot.domain.messages import ReleaseMessageUpdate
from bot.ports import Comparison
from bot.services import assessment, audit, gates, outbox
from bot.services.gate_close import close_gate, lock_gate, review_left_waiting
from bot.services.transitions import lock_environment, transition
from bot.store import statements as sql
from bot.store.tables import Deployment, Gate, Release, row_id

# The ingest path's ORM queries, built once (building one costs more than running it); its
# Core statements, where nothing needs an ORM object back, are in bot.store.statements.
_LATEST = (
    select(Deployment)
    .where(col(Deployment.service) == sa.bindparam("service"))
    .where(col(Deployment.environment) == sa.bindparam("environment"))
    .where(col(Deployment.sha) == sa.bindparam("sha"))
    .order_by(col(Deployment.attempt).desc())
    .limit(1)
)
_BY_IDS_OLDEST_FIRST = (
    select(Deployment)
    .where(col(Deployment.id).in_(sa.bindparam("ids", expanding=True)))
    .order_by(col(Deployment.created_at), col(Deployment.id))
)

SLACK_MESSAGE = outbox.SLACK_MESSAGE
# How a provider is named in a gate's reason ("decided in GitHub by octocat").
_HOSTS = {"github": "GitHub", "gitlab": "GitLab", "argocd": "Argo CD", "jenkins": "Jenkins"}


@dataclass(frozen=True)
class Applied:
    """What applying one CI event did: the deployment, whether anything changed, and the
    states it moved through (in order)."""

    deployment: Deployment | None
    changed: bool
    moved_to: tuple[str, ...] = ()

    @property
    def deployed(self) -> bool:
        """The event took the deployment to succeeded (what reactions follow up on)."""
        return (
            bool(self.moved_to)
            and self.deployment is not None
            and (self.deployment.state == states.SUCCEEDED)
        )


def apply_event(
    session: Session,
    *,
    now: datetime,
    service: str,
    environment: str,
    event: DeployEvent,
    commits: Comparison | None = None,
    config: Config | None = None,
) -> tuple[Deployment | None, bool]:
    """Move (or start) the deployment the event is about. Returns (deployment, changed).

    What follows a successful deploy (verification, promotion, finishing rollbacks) is not
    done here: `bot.services.reactions.apply_event` applies an event and then reacts.
    """
    applied = apply(
        session,
        now=now,
        service=service,
        environment=environment,
        event=event,
        commits=commits,
        config=config,
    )
    return applied.deployment, applied.changed


def apply(
    session: Session,
    *,
    now: datetime,
    service: str,
    environment: str,
    event: DeployEvent,
    commits: Comparison | None = None,
    config: Config | None = None,
) -> Applied:
    """Move (or start) the deployment the event is about, and say which states it passed."""
    if event.status not in states.CI_REPORTED:
        raise InvalidRequest(f"CI events report one of {sorted(states.CI_REPORTED)}")
    current = _latest(session, service=service, environment=environment, sha=event.sha)
    if current is None and event.extra.get("review"):
        return Applied(None, False)  # a review on the code host of a deployment never seen
    if current is None or _starts_new_attempt(current, event):
        current = _create(
            session,
            now=now,
            service=service,
            environment=environment,
            event=event,
            attempt=1 if current is None else current.attempt + 1,
        )
        changed = True
    else:
        shown = (current.version, current.ref)
        changed = _fill_in(current, event)
        if (current.version, current.ref) != shown:
            # The message's header and commit line show them, even when no state changes.
            outbox.enqueue(session, ReleaseMessageUpdate(row_id(current)), now=now)
    if commits is not None:
        _store_webhook_commits(session, deployment=current, commits=commits, event=event)
    if event.gate is not None and config is not None:
        gates.open_gate(
            session,
            now=now,
            config=config,
            deployment=current,
            request=event.gate,
            requested_by=actor_of(event),
        )
        return Applied(current, True)
    closed = _end_pending_gate(session, now=now, deployment=current, event=event)
    path = states.ci_path(current.state, event.status) or ()
    for target in path:
        transition(
            session,
            deployment=current,
            target=target,
            now=now,
            actor=actor_of(event),
            source=event.source_event,
            url=event.url,
            note=event.description,
        )
    return Applied(current, changed or closed or bool(path), tuple(path))


def _end_pending_gate(
    session: Session, *, now: datetime, deployment: Deployment, event: DeployEvent
) -> bool:
    """Close the deployment's waiting gate when the CI event shows the pipeline went ahead
    (or ended) without it; the event then moves the deployment from where the close left it.
    Returns whether a gate was closed."""
    if deployment.state != states.AWAITING_APPROVAL:
        return False
    gate = session.exec(
        select(Gate)
        .where(col(Gate.deployment_id) == deployment.id)
        .where(col(Gate.status) == gate_rules.PENDING)
        .order_by(col(Gate.id).desc())
    ).first()
    if gate is None:
        return False
    close = pipeline_close(
        gate_status=gate.status,
        ci_status=event.status,
        decided_by=event.decided_by,
        host=_HOSTS.get(event.target.provider, event.target.provider),
        review=event.extra.get("review"),
        comment=event.description,
        holds_the_job=gate.decide_via == "github_protection_rule",
    )
    if close is None:
        if left_waiting(event.extra.get("review"), gate.decide_via == "github_protection_rule"):
            review_left_waiting(
                session,
                now=now,
                gate=gate,
                deployment=deployment,
                actor=_decider(event),
                host=_HOSTS.get(event.target.provider, event.target.provider),
                reviewer=event.decided_by or event.target.provider,
                comment=event.description,
            )
        return False
    lock_gate(session, gate)
    close_gate(
        session,
        now=now,
        gate=gate,
        deployment=deployment,
        status=close.status,
        actor=_decider(event),
        reason=close.reason,
        target_state=close.target_state,
        tell_pipeline=False,
    )
    return True


def _decider(event: DeployEvent) -> str:
    """Who an event names as having decided on its gate: `provider:login`, or the provider."""
    provider = event.target.provider
    return f"{provider}:{event.decided_by}" if event.decided_by else provider


def _latest(session: Session, *, service: str, environment: str, sha: str) -> Deployment | None:
    return session.exec(
        _LATEST, params={"service": service, "environment": environment, "sha": sha}
    ).first()


def _store_webhook_commits(
    session: Session, *, deployment: Deployment, commits: Comparison, event: DeployEvent
) -> None:
    release = session.get(Release, deployment.release_id)
    if release is not None and release.commits_source != "webhook":
        base = event.extra.get("previous_sha")
        assessment.store_comparison(release, comparison=commits, base=base, source="webhook")
        session.add(release)


def _retries(event: DeployEvent) -> int:
    attempt = event.extra.get("run_attempt", "1")
    return max(int(attempt) - 1, 0) if attempt.isdigit() else 0


def _starts_new_attempt(current: Deployment, event: DeployEvent) -> bool:
    """CI reports a new run of a version whose last deployment here is over.

    After a finished deployment any new run counts. After a successful one (a version
    deployed again, as a rollback does), only a run the same CI system names differently
    does: another source reporting the same deployment (a workflow run and the GitHub
    deployment it created) must not split it in two.
    """
    new_id = event.external_id
    if new_id is None or new_id == current.external_id:
        return False
    if current.state in states.FINISHED:
        return True
    if current.state not in states.DEPLOYED:
        return False
    return _id_kind(new_id) == _id_kind(current.external_id or "")


def _id_kind(external_id: str) -> str:
    return external_id.split(":", 1)[0]


def _fill_in(deployment: Deployment, event: DeployEvent) -> bool:
    """Details a later event knows and an earlier one did not (CI link, deployer, version)."""
    changed = False
    if event.version and not deployment.version:
        deployment.version = event.version[:200]
        changed = True
    if event.ref and not deployment.ref:
        deployment.ref = event.ref[:255]
        changed = True
    if event.url and not deployment.ci_url:
        deployment.ci_url = event.url[:2000]
        changed = True
    if event.actor and not deployment.deployer:
        deployment.deployer = event.actor[:200]
        changed = True
    if actor_ids(event) and not deployment.deployer_ids:
        deployment.deployer_ids = actor_ids(event)
    if event.external_id and not deployment.external_id:
        deployment.external_id = event.external_id[:100]
    if _retries(event) > deployment.ci_retries:
        deployment.ci_retries = _retries(event)
    return changed


def actor_ids(event: DeployEvent) -> list[str] | None:
    """The deployer's code-host login and e-mail, when the CI named them (`extra`'s
    `actor_login` and `actor_email`), for the self-approval ban."""
    ids = [event.extra.get(key, "")[:320] for key in ("actor_login", "actor_email")]
    return [name for name in ids if name] or None


def actor_of(event: DeployEvent) -> str:
    """Who an event names as acting: `provider:login`, or the provider alone."""
    provider = event.target.provider
    return f"{provider}:{event.actor}" if event.actor else provider


def _release(session: Session, *, now: datetime, service: str, event: DeployEvent) -> int:
    """The id of the release of `event.sha`, made on its first event."""
    conn = session.connection()
    found = conn.execute(sql.FIND_RELEASE, {"service": service, "sha": event.sha}).first()
    if found is None:
        # Two first events of one version collide on uq_release_service_sha; the loser's
        # transaction is retried and finds this row.
        inserted = conn.execute(
            sql.INSERT_RELEASE,
            {
                "service": service,
                "sha": event.sha,
                "version": event.version and event.version[:200],
                "ref": event.ref and event.ref[:255],
                "created_at": now,
                "base_sha": None,
                "commits": None,
                "diff": None,
                "commits_source": None,
            },
        )
        return _new_id(inserted)
    if event.version and not found.version:
        # The first version a sha was seen as; each deployment keeps its own (`_create`).
        conn.execute(sql.SET_RELEASE_VERSION, {"id": found.id, "v": event.version[:200]})
    return int(found.id)


def _create(
    session: Session,
    *,
    now: datetime,
    service: str,
    environment: str,
    event: DeployEvent,
    attempt: int,
) -> Deployment:
    lock_environment(session, service=service, environment=environment)
    release_id = _release(session, now=now, service=service, event=event)
    deployment = Deployment(
        release_id=release_id,
        service=service,
        environment=environment,
        sha=event.sha,
        version=event.version and event.version[:200],
        ref=event.ref and event.ref[:255],
        attempt=attempt,
        state=states.PENDING,
        row_version=1,
        source=event.source_event[:64],
        external_id=(event.external_id or None) and event.external_id[:100],
        ci_url=event.url and event.url[:2000],
        deployer=event.actor and event.actor[:200],
        deployer_ids=actor_ids(event),
        description=event.description and event.description[:2000],
        ci_retries=_retries(event),
        created_at=now,
        updated_at=now,
    )
    # A Core INSERT, then the object joins the session as if loaded (every column is set
    # above): an ORM flush of one new row costs several times the INSERT itself. Two first
    # events for one deployment collide here on uq_deployment_attempt.
    values = deployment.model_dump(exclude={"id"})
    inserted = session.connection().execute(sql.INSERT_DEPLOYMENT, values)
    deployment.id = _new_id(inserted)
    make_transient_to_detached(deployment)
    session.add(deployment)
    audit.append(
        session,
        at=now,
        actor=actor_of(event),
        action="deployment.created",
        subject=f"deployment:{deployment.id}",
        details={
            "service": service,
            "environment": environment,
            "sha": event.sha,
            "attempt": attempt,
            "source": event.source_event,
            "release": release_id,
        },
    )
    outbox.enqueue(session, ReleaseMessageUpdate(deployment.id), now=now)
    assessment.enqueue(session, deployment=deployment, now=now)
    _supersede_older(session, now=now, newer=deployment)
    return deployment


def _new_id(inserted: sa.CursorResult[Any]) -> int:
    key = inserted.inserted_primary_key
    assert key is not None
    return int(key[0])


def _supersede_older(session: Session, *, now: datetime, newer: Deployment) -> None:
    params = {"service": newer.service, "environment": newer.environment, "sha": newer.sha}
    session.flush()  # what an ORM query would flush first
    ids = [
        row.id
        for row in session.connection().execute(sql.SUPERSEDABLE, params)
        if row.created_at <= newer.created_at
    ]
    if not ids:
        return
    older = session.exec(_BY_IDS_OLDEST_FIRST, params={"ids": ids}).all()
    for deployment in older:
        transition(
            session,
            deployment=deployment,
            target=states.SUPERSEDED,
            now=now,
            actor="releasebot",
            source="supersede",
            note=f"superseded by {revision_label(newer.sha, newer.version)}",
            extra={"superseded_by": newer.id},
        )


def get(session: Session, deployment_id: int) -> Deployment | None:
    return session.get(Deployment, deployment_id)
