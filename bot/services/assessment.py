"""What ships in a deployment and how risky it is: commits, diff size and the risk score.

The worker runs this in two halves around the code host's compare API, so no database
transaction waits on the network:

    plan(...)  -> AssessmentPlan   (which repo, which base and head, whether to fetch)
    <ScmClient.compare(...)>       (in the worker, retried through the outbox)
    record(...)                    (store commits, diff and the risk; edit the message)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import object_session
from sqlmodel import Session

from bot.config import Config
from bot.domain import states
from bot.domain.ingest import has_sha
from bot.domain.messages import Assess, ReleaseMessageUpdate
from bot.domain.risk import RiskInputs, assess
from bot.ports import Commit, Comparison
from bot.services import audit, gates, lead_times, outbox
from bot.services.people import unknown_reason
from bot.store import statements as sql
from bot.store.tables import Deployment, Release, row_id

RECENT = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_STORED_COMMITS = 250
MAX_STORED_PATHS = 300
MAX_UNKNOWN_CHARS = 600

DEPLOYED = (states.SUCCEEDED, states.VERIFYING, states.VERIFIED)
FAILED = (states.FAILED, states.VERIFICATION_FAILED, states.ROLLED_BACK, states.ROLLBACK_FAILED)


# Built once (the assessment runs for every deployment); run on the session's connection.
_D = sql.DEPLOYMENT.c
# The newest deployment of another sha that ran in an environment, down the partial index
# of deployments that ran (`ix_deployment_service_env_ran`).
_LAST_DEPLOYED_OTHER = (
    sa.select(_D.sha)
    .where(_D.service == sa.bindparam("service"))
    .where(_D.environment == sa.bindparam("environment"))
    .where(_D.deployed_at.is_not(None))
    .where(_D.sha != sa.bindparam("sha"))
    .where(_D.created_at <= sa.bindparam("until"))
    .order_by(_D.created_at.desc())
    .limit(1)
)
# The service's record in an environment over a window, per state, from an index alone (a
# busy service has thousands of deployments there): how many, and each state's newest.
_RECENT_PER_STATE = (
    sa.select(_D.state, sa.func.count(), sa.func.max(_D.created_at))
    .where(_D.service == sa.bindparam("service"))
    .where(_D.environment == sa.bindparam("environment"))
    .where(_D.created_at >= sa.bindparam("since"))
    .where(_D.created_at < sa.bindparam("until"))
    .where(_D.state.in_(DEPLOYED + FAILED))
    .group_by(_D.state)
)
_LAST_PRODUCTION = (
    sa.select(_D.created_at)
    .where(_D.service == sa.bindparam("service"))
    .where(_D.environment.in_(sa.bindparam("environments", expanding=True)))
    .where(_D.deployed_at.is_not(None))  # implied by the states: an index
    .where(_D.state.in_(DEPLOYED))
    .where(_D.created_at < sa.bindparam("until"))
    .order_by(_D.created_at.desc())
    .limit(1)
)


@dataclass(frozen=True)
class AssessmentPlan:
    deployment_id: int
    provider: str  # github | gitlab
    repo: str
    base: str | None
    head: str
    fetch: bool  # False: the commits are already known (a generic webhook sent them)


def enqueue(session: Session, *, deployment: Deployment, now: datetime) -> None:
    outbox.enqueue(session, Assess(row_id(deployment)), now=now)


def previous_deployed_sha(
    session: Session, *, deployment: Deployment, production: Sequence[str] = ("production",)
) -> str | None:
    """The base of the comparison: the last version that deployed successfully to this
    environment, else to a production environment (`production`, in order), other than
    this one."""
    conn = session.connection()
    for environment in dict.fromkeys((deployment.environment, *production)):
        found = conn.execute(
            _LAST_DEPLOYED_OTHER,
            {
                "service": deployment.service,
                "environment": environment,
                "sha": deployment.sha,
                "until": deployment.created_at,
            },
        ).scalar()
        if found is not None:
            return str(found)
    return None


def plan(session: Session, *, config: Config, deployment_id: int) -> AssessmentPlan | None:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None or deployment.id is None:
        return None
    service = config.services.get(deployment.service)
    release = session.get(Release, deployment.release_id)
    if service is None or release is None:
        return None
    base = previous_deployed_sha(
        session,
        deployment=deployment,
        production=config.production_environments_of(deployment.service),
    )
    known = release.commits_source == "webhook" or (
        release.commits is not None and release.base_sha == base
    )
    # The code host is asked only for a range of commits: a release named by its version
    # (or following one that was) has no sha range, so its commits stay unknown.
    sha_range = has_sha(deployment.sha) and (base is None or has_sha(base))
    return AssessmentPlan(
        deployment_id=deployment.id,
        provider=service.provider,
        repo=service.repo_path,
        base=base,
        head=deployment.sha,
        fetch=not known and sha_range,
    )


def commit_to_dict(commit: Commit) -> dict[str, Any]:
    return {
        "sha": commit.sha,
        "message": commit.message[:2000],
        "author": commit.author[:200],
        "author_login": commit.author_login,
        "committer_login": commit.committer_login,
        "author_email": (commit.author_email or "")[:320] or None,
        "committer_email": (commit.committer_email or "")[:320] or None,
        "authored_at": commit.authored_at.isoformat() if commit.authored_at else None,
        "url": commit.url,
    }


def commit_rows(release_id: int, commits: Iterable[Commit]) -> list[dict[str, Any]]:
    """The `release_commit` rows of a release's commits: one per sha (its first mention),
    with `authored_us` (see ReleaseCommit; a time without an offset is taken as UTC)."""
    rows: dict[str, dict[str, Any]] = {}
    for commit in commits:
        if commit.sha not in rows:
            rows[commit.sha] = {
                "release_id": release_id,
                "sha": commit.sha,
                "authored_us": epoch_micros(commit.authored_at),
            }
    return list(rows.values())


def epoch_micros(at: datetime | None) -> int | None:
    """Microseconds since 1970-01-01 UTC, exactly (no float on the way)."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(microseconds=1)


def store_comparison(
    release: Release,
    *,
    comparison: Comparison,
    base: str | None,
    source: str,
    session: Session | None = None,
    is_production: Callable[[str, str], bool] | None = None,
) -> None:
    """Store what ships in `release`: its commits (on the release as JSON, and their times as
    `release_commit` rows, replacing any stored before), the diff's size and its base.

    `session`: the one `release` belongs to, by default; the rows are written through it,
    so in the caller's transaction. `is_production` (`Config.is_production`; by default
    environments named production): where a release that already ran has its lead times.
    """
    owner = session if session is not None else object_session(release)
    if owner is None:
        raise ValueError("store_comparison needs the release's session to store its commits")
    kept = comparison.commits[:MAX_STORED_COMMITS]
    release.base_sha = base
    release.commits = [commit_to_dict(c) for c in kept]
    release.commits_source = source
    release.diff = {
        "additions": comparison.additions,
        "deletions": comparison.deletions,
        "files": len(comparison.files),
        "paths": _paths(comparison)[:MAX_STORED_PATHS],
        "total_commits": comparison.total_commits,
        "truncated": comparison.truncated,
        "url": comparison.url,
        **_people_of(comparison),
    }
    _replace_commit_rows(owner, release, kept, is_production)


def _people_of(comparison: Comparison) -> dict[str, Any]:
    """The pull or merge requests of the commits (who merged, who approved them), or why
    they are unknown; nothing when the code host reported neither."""
    found: dict[str, Any] = {}
    if comparison.changes:
        found["changes"] = [
            {
                "number": change.number,
                "url": change.url,
                "merged_by": change.merged_by,
                "approved_by": list(change.approved_by),
            }
            for change in comparison.changes[:MAX_STORED_COMMITS]
        ]
    if comparison.people_unknown:
        found["people_unknown"] = comparison.people_unknown[:500]
    return found


def _replace_commit_rows(
    session: OrmSession,
    release: Release,
    commits: Iterable[Commit],
    is_production: Callable[[str, str], bool] | None = None,
) -> None:
    if release.id is None:
        session.add(release)
        session.flush()
    assert release.id is not None
    table = sql.RELEASE_COMMIT
    session.execute(sa.delete(table).where(table.c.release_id == release.id))
    rows = commit_rows(release.id, commits)
    if rows:
        session.execute(sa.insert(table), rows)
    # A release already in production: its commits' lead times are written again too.
    lead_times.commits_stored(session, release_id=release.id, is_production=is_production)


def _paths(comparison: Comparison) -> list[str]:
    """Every path a change touches, old names of renamed files included."""
    paths: list[str] = []
    for change in comparison.files:
        paths.append(change.path)
        if change.previous_path and change.previous_path != change.path:
            paths.append(change.previous_path)
    return paths


def record(
    session: Session,
    *,
    now: datetime,
    config: Config,
    plan: AssessmentPlan,
    comparison: Comparison | None,
    unavailable: str | None = None,
) -> None:
    """Store what the compare API said (or why it could not say) and score the risk."""
    deployment = session.get(Deployment, plan.deployment_id)
    if deployment is None:
        return
    release = session.get(Release, deployment.release_id)
    assert release is not None
    if comparison is not None:
        store_comparison(
            release,
            comparison=comparison,
            base=plan.base,
            source="scm",
            session=session,
            is_production=config.is_production,
        )
    deployment.assessment_note = unavailable[:500] if unavailable else None
    assessment = assess(
        _inputs(session, config=config, deployment=deployment, release=release), config=config.risk
    )
    deployment.risk = assessment.to_dict()
    session.add(deployment)
    session.add(release)
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action="deployment.assessed",
        subject=f"deployment:{deployment.id}",
        details={
            "score": assessment.score,
            "level": assessment.level,
            "factors": [f.name for f in assessment.factors],
            "base": plan.base,
            "commits": len(release.commits or []),
            "unavailable": unavailable,
            **({"unknown": assessment.unknown} if assessment.unknown else {}),
        },
    )
    outbox.enqueue(session, ReleaseMessageUpdate(row_id(deployment)), now=now)
    gates.reassess(session, now=now, config=config, deployment=deployment)


def _unknown(deployment: Deployment, release: Release) -> str | None:
    """Why the release could not be read in full (its commits, or who merged and approved
    them), or None: such a release scores the `unknown_changes` factor and is never approved
    automatically."""
    reason = unknown_reason(deployment, release.commits, release.diff or {}, fetching=False)
    return reason[:MAX_UNKNOWN_CHARS] if reason else None


def _inputs(
    session: Session, *, config: Config, deployment: Deployment, release: Release
) -> RiskInputs:
    diff = release.diff or {}
    # The newest of the states' newest deployments says whether the last one failed.
    conn = session.connection()
    per_state = conn.execute(
        _RECENT_PER_STATE,
        {
            "service": deployment.service,
            "environment": deployment.environment,
            "since": deployment.created_at - RECENT,
            "until": deployment.created_at,
        },
    ).all()
    recent_deploys = sum(count for _, count, _ in per_state)
    recent_failures = sum(count for state, count, _ in per_state if state in FAILED)
    latest_state = max(per_state, key=lambda row: row[2])[0] if per_state else None
    last_production = conn.execute(
        _LAST_PRODUCTION,
        {
            "service": deployment.service,
            "environments": list(config.production_environments_of(deployment.service)),
            "until": deployment.created_at,
        },
    ).scalar()
    days = (
        (deployment.created_at - last_production).total_seconds() / 86400
        if last_production is not None
        else None
    )
    return RiskInputs(
        additions=int(diff.get("additions", 0)),
        deletions=int(diff.get("deletions", 0)),
        files_changed=int(diff.get("files", 0)),
        paths=tuple(diff.get("paths", ())),
        commit_count=int(diff.get("total_commits", len(release.commits or []))),
        truncated=bool(diff.get("truncated", False))
        or len(diff.get("paths", ())) < int(diff.get("files", 0)),
        unknown=_unknown(deployment, release),
        days_since_last_production_deploy=days,
        ci_retried_jobs=deployment.ci_retries,
        deploy_at=deployment.created_at,
        environment=deployment.environment,
        is_production=config.is_production(deployment.service, deployment.environment),
        freeze_active=any(
            f.covers(
                deployment.environment,
                config.is_production(deployment.service, deployment.environment),
            )
            and f.active_at(deployment.created_at)
            for f in config.freezes
        ),
        recent_deploys=int(recent_deploys),
        recent_failures=int(recent_failures),
        last_deploy_failed=latest_state in FAILED,
    )
