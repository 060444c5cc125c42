"""The people behind a release, as the self-approval ban sees them: who authored and
committed its commits, who merged and approved its pull or merge requests, who started the
deployment, and why they cannot be determined when they cannot.

The people are unknown, and gates refuse approvals by default (`gate.unknown_people`), when:

* the code host could not list the commits for this deployment (unreachable, an error
  answer, no credentials): the assessment left its note on the deployment;
* no commit list exists: none was fetched or sent, it is still being fetched, or the
  release is named by its version only (the gates API without a sha);
* the code host listed fewer commits than the release has (its cap);
* the pull requests of the commits could not be looked up.

A first deployment (no earlier version to compare with) is not unknown: its head commit is
the comparison, as for the risk score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bot.domain import gates as rules
from bot.store import statements as sql
from bot.store.tables import Deployment

DEPLOYMENT = sql.DEPLOYMENT
VERSION_KEY_PREFIX = "v:"
"""A release a CI job named by its version only (the gates API without a sha) is stored
under `v:<version>` in the `sha` columns."""


def release_people(session: Session, deployment: Deployment) -> rules.ReleasePeople:
    """Everyone who had a hand in the deployment's release, or why that is not known."""
    session.flush()  # what the ORM would flush before loading the release
    found = (
        session.connection()
        .execute(sql.RELEASE_PEOPLE, {"release_id": deployment.release_id})
        .first()
    )
    commits: list[Mapping[str, Any]] | None = found.commits if found is not None else None
    diff: Mapping[str, Any] = (found.diff if found is not None else None) or {}
    listed = commits or []
    changes = [c for c in diff.get("changes") or () if isinstance(c, Mapping)]
    return rules.ReleasePeople(
        authors=tuple(_login(c, "author") for c in listed),
        committers=tuple(_login(c, "committer") for c in listed),
        author_emails=tuple(c.get("author_email") or "" for c in listed),
        committer_emails=tuple(c.get("committer_email") or "" for c in listed),
        mergers=tuple(str(c.get("merged_by") or "") for c in changes if c.get("merged_by")),
        approvers=tuple(tuple(str(name) for name in c.get("approved_by") or ()) for c in changes),
        deployers=_deployers(session, deployment),
        unknown=unknown_reason(deployment, commits, diff),
    )


def unknown_reason(
    deployment: Deployment,
    commits: Sequence[Mapping[str, Any]] | None,
    diff: Mapping[str, Any],
    *,
    fetching: bool | None = None,
) -> str | None:
    """Why the people behind the deployment's release cannot be determined, or None.

    `fetching`: whether the commits may still be on their way (by default: while the
    deployment has no risk assessment yet); the assessment itself passes False.
    """
    if deployment.sha.startswith(VERSION_KEY_PREFIX):
        return "it is named by its version only, so there are no commits to look them up by"
    if deployment.assessment_note:
        return f"its commits could not be listed ({deployment.assessment_note})"
    if commits is None:
        if deployment.risk is None if fetching is None else fetching:
            return "its commits are still being fetched; try again in a moment"
        return "no list of its commits was sent or fetched"
    total = diff.get("total_commits")
    if isinstance(total, int) and total > len(commits):
        return f"only {len(commits)} of its {total} commits could be listed"
    people_unknown = diff.get("people_unknown")
    if people_unknown:
        return str(people_unknown)
    return None


# Every attempt of one version in one environment (uq_deployment_attempt's leading columns).
_ATTEMPTS = (
    sa.select(DEPLOYMENT.c.deployer, DEPLOYMENT.c.deployer_ids)
    .where(DEPLOYMENT.c.service == sa.bindparam("service"))
    .where(DEPLOYMENT.c.environment == sa.bindparam("environment"))
    .where(DEPLOYMENT.c.sha == sa.bindparam("sha"))
)


def _deployers(session: Session, deployment: Deployment) -> tuple[str, ...]:
    """Who deployed this version to this environment, in this attempt or an earlier one (a
    run that failed and is tried again behind a gate), under every name each was reported
    by: the name, and the login and e-mail when the CI named them."""
    params = {
        "service": deployment.service,
        "environment": deployment.environment,
        "sha": deployment.sha,
    }
    names = [deployment.deployer or "", *(deployment.deployer_ids or ())]
    for deployer, ids in session.connection().execute(_ATTEMPTS, params):
        names += [deployer or "", *(ids or ())]
    return tuple(dict.fromkeys(str(name) for name in names if name))


def _login(commit: Mapping[str, Any], role: str) -> str:
    """The stored login of a commit's author or committer, or the GitHub login its noreply
    e-mail names when the host linked no account."""
    login = commit.get(f"{role}_login") or ""
    if login:
        return str(login)
    return rules.noreply_login(str(commit.get(f"{role}_email") or "")) or ""
