"""The sections of the evidence pack that describe the release itself: its change, its
deployments with their risk and gates, freezes, break-glass and verification."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config, ScheduledFreeze
from bot.domain.audit import canonical_json, format_at
from bot.store.tables import (
    Approval,
    Check,
    CheckRun,
    Deployment,
    Gate,
    Release,
)

FORMAT = "releasebot.evidence/1"
DIFF_HASH_COVERS = (
    'sha256 of canonical JSON (sorted keys, separators "," and ":", UTF-8) of '
    '{"base_sha", "sha", "commits", "diff"} as they appear in this pack'
)
DIFF_FROM_COMPARE = "the compare's file list and line counts, stored when the risk was assessed"
DIFF_FROM_COMMITS = "the commit list only: the compare's file list was not stored"
COMMIT_FIELDS = (
    "sha",
    "message",
    "author",
    "author_login",
    "committer_login",
    "authored_at",
    "url",
)
DIFF_FIELDS = ("additions", "deletions", "files", "truncated", "paths", "total_commits", "url")
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def diff_sha256(
    *, base_sha: str | None, sha: str, commits: list[dict[str, Any]], diff: dict[str, Any]
) -> str:
    """The hash `change.diff_sha256` carries (see the package docstring)."""
    body = canonical_json({"base_sha": base_sha, "sha": sha, "commits": commits, "diff": diff})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- sections --------------------------------------------------------------------------------


def change(release: Release, config: Config, *, provider: str | None) -> dict[str, Any]:
    commits = [commit(c) for c in release.commits or []]
    stored = release.diff or {}
    diff = {key: stored.get(key) for key in DIFF_FIELDS}
    diff["paths"] = list(stored.get("paths") or [])
    return {
        "base_sha": release.base_sha,
        "commits_source": release.commits_source,
        "commits": commits,
        "diff": diff,
        "diff_sha256": diff_sha256(
            base_sha=release.base_sha, sha=release.sha, commits=commits, diff=diff
        ),
        "diff_sha256_covers": DIFF_HASH_COVERS,
        "diff_sha256_source": DIFF_FROM_COMPARE if release.diff else DIFF_FROM_COMMITS,
        "diff_range": {"base": release.base_sha, "head": release.sha, "url": diff["url"]},
        "authors": authors(commits, config, provider),
    }


def commit(stored: Mapping[str, Any]) -> dict[str, Any]:
    commit = {key: stored.get(key) for key in COMMIT_FIELDS}
    authored = commit["authored_at"]
    if isinstance(authored, str):
        with contextlib.suppress(ValueError):  # else kept as the code host wrote it
            commit["authored_at"] = iso(datetime.fromisoformat(authored))
    return commit


def authors(
    commits: list[dict[str, Any]], config: Config, provider: str | None
) -> list[dict[str, Any]]:
    """Everyone who authored or committed a change, and the Slack users mapped to them."""
    found: dict[str, dict[str, Any]] = {}
    for commit in commits:
        for field, role in (("author_login", "authored"), ("committer_login", "committed")):
            login = commit.get(field)
            if not login:
                continue
            entry = found.setdefault(
                login,
                {"login": login, "names": [], "commits": 0, "authored": 0, "committed": 0},
            )
            entry[role] += 1
            if role == "authored":
                entry["commits"] += 1
                name = commit.get("author")
                if name and name not in entry["names"]:
                    entry["names"].append(name)
    for login, entry in found.items():
        entry["slack_users"] = sorted(
            user
            for user, identity in config.identities.items()
            if provider is not None
            and (getattr(identity, provider, None) or "").casefold() == login.casefold()
        )
    return [found[login] for login in sorted(found)]


def production(deployments: list[Deployment], config: Config) -> dict[str, Any]:
    """Whether, where and when the release first ran in production."""
    ran = sorted(
        (d.deployed_at, d.environment)
        for d in deployments
        if d.deployed_at is not None and config.is_production(d.service, d.environment)
    )
    return {
        "reached": bool(ran),
        "environments": sorted({environment for _, environment in ran}),
        "first_deployed_at": iso(ran[0][0]) if ran else None,
    }


def deployment_doc(
    deployment: Deployment, gates: list[dict[str, Any]], *, production: bool
) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "environment": deployment.environment,
        "production": production,
        "attempt": deployment.attempt,
        "state": deployment.state,
        "source": deployment.source,
        "external_id": deployment.external_id,
        "sha": deployment.sha,
        "created_at": iso(deployment.created_at),
        "updated_at": iso(deployment.updated_at),
        "deployed_at": iso(deployment.deployed_at),
        "finished_at": iso(deployment.finished_at),
        "deployer": deployment.deployer,
        "ci_url": deployment.ci_url,
        "description": deployment.description,
        "rollback_to": deployment.rollback_to,
        "risk": jsonable(deployment.risk),
        "assessment_note": deployment.assessment_note,
        "gates": gates,
    }


def gate_doc(gate: Gate, approvals: list[Approval], config: Config) -> dict[str, Any]:
    return {
        "id": gate.id,
        "sha": gate.sha,
        "status": gate.status,
        "requirement": jsonable(gate.requirement),
        "decide_via": gate.decide_via,
        "requested_by": gate.requested_by,
        "created_at": iso(gate.created_at),
        "expires_at": iso(gate.expires_at),
        "remind_at": iso(gate.remind_at),
        "reminded_at": iso(gate.reminded_at),
        "decided_at": iso(gate.decided_at),
        "decided_by": gate.decided_by,
        "reason": gate.reason,
        "progress": gate.progress,
        "break_glass": break_glass_doc(gate.break_glass) if gate.break_glass else None,
        "approvals": [
            {
                "user_id": a.user_id,
                "decision": a.decision,
                "reason": a.reason,
                "at": iso(a.created_at),
                "identity": identity(config, a.user_id),
            }
            for a in approvals
        ],
    }


def break_glass_doc(record: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's break-glass record (requested_by, reason, requested_at, confirmed_by,
    confirmed_at, valid_until), its times in the pack's UTC form."""
    doc: dict[str, Any] = jsonable(dict(record))
    for key, value in doc.items():
        if (key.endswith("_at") or key == "valid_until") and isinstance(value, str):
            with contextlib.suppress(ValueError):  # else kept as stored
                doc[key] = iso(datetime.fromisoformat(value))
    return doc


def freezes_for(
    deployment: Deployment, freezes: Iterable[ScheduledFreeze], production: bool
) -> list[dict[str, Any]]:
    return [
        {
            "deployment_id": deployment.id,
            "environment": deployment.environment,
            "at": iso(deployment.created_at),
            "environments": list(freeze.environments),
            "reason": freeze.reason,
            "start": iso(freeze.start),
            "end": iso(freeze.end),
        }
        for freeze in freezes
        if freeze.covers(deployment.environment, production)
        and freeze.active_at(deployment.created_at)
    ]


def verification(session: Session, deployment_ids: list[int]) -> list[dict[str, Any]]:
    if not deployment_ids:
        return []
    checks = session.exec(
        select(Check)
        .where(col(Check.deployment_id).in_(deployment_ids))
        .order_by(col(Check.deployment_id), col(Check.id))
    ).all()
    runs: dict[int, list[CheckRun]] = {}
    for run in session.exec(
        select(CheckRun)
        .where(col(CheckRun.deployment_id).in_(deployment_ids))
        .order_by(col(CheckRun.due_at), col(CheckRun.id))
    ).all():
        runs.setdefault(run.check_id, []).append(run)
    return [
        {
            "deployment_id": check.deployment_id,
            "check_id": check.id,
            "name": check.name,
            "kind": check.kind,
            "spec": jsonable(check.spec),
            "runs": [
                {
                    "id": run.id,
                    "due_at": iso(run.due_at),
                    "status": run.status,
                    "finished_at": iso(run.finished_at),
                    "result": jsonable(run.result),
                }
                for run in runs.get(check.id or 0, [])
            ],
        }
        for check in checks
    ]


# --- reading ---------------------------------------------------------------------------------


def gates(session: Session, deployment_ids: list[int]) -> dict[int, list[Gate]]:
    found: dict[int, list[Gate]] = {}
    if deployment_ids:
        for gate in session.exec(
            select(Gate).where(col(Gate.deployment_id).in_(deployment_ids)).order_by(col(Gate.id))
        ).all():
            found.setdefault(gate.deployment_id, []).append(gate)
    return found


def approvals(session: Session, gate_ids: list[int]) -> dict[int, list[Approval]]:
    found: dict[int, list[Approval]] = {}
    if gate_ids:
        for approval in session.exec(
            select(Approval)
            .where(col(Approval.gate_id).in_(gate_ids))
            .order_by(col(Approval.created_at), col(Approval.id))
        ).all():
            found.setdefault(approval.gate_id, []).append(approval)
    return found


def identity(config: Config, user_id: str) -> dict[str, Any] | None:
    identity = config.identities.get(user_id)
    return identity.model_dump(mode="json") if identity is not None else None


def slack_users(*names: str | None) -> set[str]:
    return {name for name in names if name and SLACK_USER.fullmatch(name)}


def strings(value: object) -> list[str]:
    """Every string inside a JSON value (to find the people a break-glass record names)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings(item)]
    return []


def details(raw: str) -> Any:
    """The record's details as JSON; a row that no longer parses is shown as it is stored."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {"unreadable": raw}


def jsonable(value: Any) -> Any:
    """A stored JSON column as plain JSON (a copy, so the pack never aliases the row)."""
    return None if value is None else json.loads(json.dumps(value, default=str))


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_at(moment)
