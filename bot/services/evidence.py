"""The evidence pack of a release: one JSON document an auditor can read on its own.

    pack = evidence_pack(session, release_id=7, config=config, generated_at=clock.now())
    print(json.dumps(pack, indent=2))        # `releasebot audit evidence 7`

Structure (`"format": "releasebot.evidence/1"`); every time is UTC ISO 8601 with a Z,
written as the audit chain writes it (`2026-11-17T10:00:00.000000Z`):

    format          "releasebot.evidence/1"
    generated_at    when the pack was built
    release         {id, service, repo, sha, version, ref, created_at}
    change          {base_sha, commits_source,
                     commits: [{sha, message, author, author_login, committer_login,
                                authored_at, url}],
                     diff: {additions, deletions, files, truncated, paths, total_commits, url},
                     diff_sha256, diff_sha256_covers,
                     authors: [{login, names, commits, authored, committed, slack_users}]}
    production      {reached, environments, first_deployed_at}: whether the release ran in
                    a production environment of its service (`Config.is_production`), in
                    which ones, and when it first did (null when it never did)
    deployments     [{id, environment, production, attempt, state, source, external_id, sha,
                      created_at, updated_at, finished_at, deployer, ci_url, description,
                      rollback_to, risk: {score, level, factors: [{name, points, reason}]},
                      assessment_note,
                      gates: [{id, sha, status, requirement, decide_via, requested_by,
                               created_at, expires_at, remind_at, reminded_at, decided_at,
                               decided_by, reason, progress, break_glass,
                               approvals: [{user_id, decision, reason, at, identity}]}]}]
    freezes         [{deployment_id, environment, at, environments, reason, start, end}]:
                    each configured freeze that covered a deployment's environment at the
                    deployment's created_at (empty: no deployment ran in a freeze)
    break_glass     [{deployment_id, gate_id, requested_by, reason, requested_at,
                      confirmed_by, confirmed_at, valid_until}]: every gate passed (or asked
                    to be passed) by break-glass, as on the gate itself
    verification    [{deployment_id, check_id, name, kind, spec,
                      runs: [{id, due_at, status, finished_at, result}]}]
    identities      {slack user id: {github, gitlab, email} or null} for every Slack user
                    who decided, approved or acted on the release (config `identities`)
    audit           {records: [{seq, at, actor, action, subject, details, prev_hash, hash}],
                     chain: {verified, first_break, first_break_reason, records_checked,
                             head_seq, head_hash}}

`change.diff_sha256` is the sha256 (hex) of the canonical JSON (sorted keys, no spaces,
UTF-8) of `{"base_sha", "sha", "commits", "diff"}` exactly as they appear in the pack, so an
auditor recomputes it from the pack alone. The audit records are those whose subject is
`deployment:<id>` or `gate:<id>` of this release; each `hash` recomputes with
`bot.domain.audit.record_hash`, and `chain` says whether the whole chain verified when the
pack was generated, with the head (latest record) that covers everything before it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config, ScheduledFreeze
from bot.domain.audit import canonical_json, format_at
from bot.services import audit
from bot.store.tables import (
    Approval,
    AuditEvent,
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
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def evidence_pack(
    session: Session, *, release_id: int, config: Config, generated_at: datetime
) -> dict[str, Any]:
    """The evidence pack of one release; raises LookupError if the release does not exist."""
    release = session.get(Release, release_id)
    if release is None or release.id is None:
        raise LookupError(f"release {release_id} not found")
    service = config.services.get(release.service)
    deployments = list(
        session.exec(
            select(Deployment)
            .where(Deployment.release_id == release.id)
            .order_by(col(Deployment.created_at), col(Deployment.id))
        ).all()
    )
    deployment_ids = [d.id for d in deployments if d.id is not None]
    gates = _gates(session, deployment_ids)
    approvals = _approvals(session, [g.id for gs in gates.values() for g in gs if g.id])
    records = _audit_records(session, deployment_ids, gates)

    people: set[str] = set()
    deployment_docs: list[dict[str, Any]] = []
    freezes: list[dict[str, Any]] = []
    break_glass: list[dict[str, Any]] = []
    for deployment in deployments:
        assert deployment.id is not None
        gate_docs = []
        for gate in gates.get(deployment.id, []):
            assert gate.id is not None
            votes = approvals.get(gate.id, [])
            people.update(a.user_id for a in votes)
            people.update(_slack_users(gate.decided_by, gate.requested_by))
            if gate.break_glass:
                people.update(_slack_users(*_strings(gate.break_glass)))
                break_glass.append(
                    {
                        "deployment_id": deployment.id,
                        "gate_id": gate.id,
                        **_break_glass_doc(gate.break_glass),
                    }
                )
            gate_docs.append(_gate_doc(gate, votes, config))
        people.update(_slack_users(deployment.deployer))
        production = config.is_production(deployment.service, deployment.environment)
        deployment_docs.append(_deployment_doc(deployment, gate_docs, production=production))
        freezes.extend(_freezes_for(deployment, config.freezes, production))
    people.update(_slack_users(*(r["actor"] for r in records)))

    return {
        "format": FORMAT,
        "generated_at": _iso(generated_at),
        "release": {
            "id": release.id,
            "service": release.service,
            "repo": service.repo if service is not None else None,
            "sha": release.sha,
            "version": release.version,
            "ref": release.ref,
            "created_at": _iso(release.created_at),
        },
        "change": _change(release, config, provider=service.provider if service else None),
        "production": _production(deployments, config),
        "deployments": deployment_docs,
        "freezes": freezes,
        "break_glass": break_glass,
        "verification": _verification(session, deployment_ids),
        "identities": {user: _identity(config, user) for user in sorted(people)},
        "audit": {"records": records, "chain": _chain(session)},
    }


def _chain(session: Session) -> dict[str, Any]:
    """Whether the whole audit chain verifies, where it first breaks, and its head."""
    checked, broken = audit.verify_chain(session)
    head = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    return {
        "verified": broken is None,
        "first_break": broken.seq if broken is not None else None,
        "first_break_reason": broken.reason if broken is not None else None,
        "records_checked": checked,
        "head_seq": head.seq if head is not None else None,
        "head_hash": head.hash if head is not None else None,
    }


def diff_sha256(
    *, base_sha: str | None, sha: str, commits: list[dict[str, Any]], diff: dict[str, Any]
) -> str:
    """The hash `change.diff_sha256` carries (see the module docstring)."""
    body = canonical_json({"base_sha": base_sha, "sha": sha, "commits": commits, "diff": diff})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- sections --------------------------------------------------------------------------------


def _change(release: Release, config: Config, *, provider: str | None) -> dict[str, Any]:
    commits = [_commit(c) for c in release.commits or []]
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
        "authors": _authors(commits, config, provider),
    }


def _commit(stored: Mapping[str, Any]) -> dict[str, Any]:
    commit = {key: stored.get(key) for key in COMMIT_FIELDS}
    authored = commit["authored_at"]
    if isinstance(authored, str):
        try:
            commit["authored_at"] = _iso(datetime.fromisoformat(authored))
        except ValueError:
            pass  # kept as the code host wrote it
    return commit


def _authors(
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


def _production(deployments: list[Deployment], config: Config) -> dict[str, Any]:
    """Whether, where and when the release first ran in production."""
    ran = sorted(
        (d.deployed_at, d.environment)
        for d in deployments
        if d.deployed_at is not None and config.is_production(d.service, d.environment)
    )
    return {
        "reached": bool(ran),
        "environments": sorted({environment for _, environment in ran}),
        "first_deployed_at": _iso(ran[0][0]) if ran else None,
    }


def _deployment_doc(
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
        "created_at": _iso(deployment.created_at),
        "updated_at": _iso(deployment.updated_at),
        "deployed_at": _iso(deployment.deployed_at),
        "finished_at": _iso(deployment.finished_at),
        "deployer": deployment.deployer,
        "ci_url": deployment.ci_url,
        "description": deployment.description,
        "rollback_to": deployment.rollback_to,
        "risk": _jsonable(deployment.risk),
        "assessment_note": deployment.assessment_note,
        "gates": gates,
    }


def _gate_doc(gate: Gate, approvals: list[Approval], config: Config) -> dict[str, Any]:
    return {
        "id": gate.id,
        "sha": gate.sha,
        "status": gate.status,
        "requirement": _jsonable(gate.requirement),
        "decide_via": gate.decide_via,
        "requested_by": gate.requested_by,
        "created_at": _iso(gate.created_at),
        "expires_at": _iso(gate.expires_at),
        "remind_at": _iso(gate.remind_at),
        "reminded_at": _iso(gate.reminded_at),
        "decided_at": _iso(gate.decided_at),
        "decided_by": gate.decided_by,
        "reason": gate.reason,
        "progress": gate.progress,
        "break_glass": _break_glass_doc(gate.break_glass) if gate.break_glass else None,
        "approvals": [
            {
                "user_id": a.user_id,
                "decision": a.decision,
                "reason": a.reason,
                "at": _iso(a.created_at),
                "identity": _identity(config, a.user_id),
            }
            for a in approvals
        ],
    }


def _break_glass_doc(record: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's break-glass record (requested_by, reason, requested_at, confirmed_by,
    confirmed_at, valid_until), its times in the pack's UTC form."""
    doc: dict[str, Any] = _jsonable(dict(record))
    for key, value in doc.items():
        if (key.endswith("_at") or key == "valid_until") and isinstance(value, str):
            try:
                doc[key] = _iso(datetime.fromisoformat(value))
            except ValueError:
                pass  # kept as stored
    return doc


def _freezes_for(
    deployment: Deployment, freezes: Iterable[ScheduledFreeze], production: bool
) -> list[dict[str, Any]]:
    return [
        {
            "deployment_id": deployment.id,
            "environment": deployment.environment,
            "at": _iso(deployment.created_at),
            "environments": list(freeze.environments),
            "reason": freeze.reason,
            "start": _iso(freeze.start),
            "end": _iso(freeze.end),
        }
        for freeze in freezes
        if freeze.covers(deployment.environment, production)
        and freeze.active_at(deployment.created_at)
    ]


def _verification(session: Session, deployment_ids: list[int]) -> list[dict[str, Any]]:
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
            "spec": _jsonable(check.spec),
            "runs": [
                {
                    "id": run.id,
                    "due_at": _iso(run.due_at),
                    "status": run.status,
                    "finished_at": _iso(run.finished_at),
                    "result": _jsonable(run.result),
                }
                for run in runs.get(check.id or 0, [])
            ],
        }
        for check in checks
    ]


def _audit_records(
    session: Session, deployment_ids: list[int], gates: Mapping[int, list[Gate]]
) -> list[dict[str, Any]]:
    subjects = [f"deployment:{i}" for i in deployment_ids]
    subjects += [f"gate:{g.id}" for found in gates.values() for g in found]
    if not subjects:
        return []
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.subject).in_(subjects))
        .order_by(col(AuditEvent.seq))
    ).all()
    return [
        {
            "seq": event.seq,
            "at": event.at,
            "actor": event.actor,
            "action": event.action,
            "subject": event.subject,
            "details": _details(event.details),
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }
        for event in events
    ]


# --- reading ---------------------------------------------------------------------------------


def _gates(session: Session, deployment_ids: list[int]) -> dict[int, list[Gate]]:
    found: dict[int, list[Gate]] = {}
    if deployment_ids:
        for gate in session.exec(
            select(Gate).where(col(Gate.deployment_id).in_(deployment_ids)).order_by(col(Gate.id))
        ).all():
            found.setdefault(gate.deployment_id, []).append(gate)
    return found


def _approvals(session: Session, gate_ids: list[int]) -> dict[int, list[Approval]]:
    found: dict[int, list[Approval]] = {}
    if gate_ids:
        for approval in session.exec(
            select(Approval)
            .where(col(Approval.gate_id).in_(gate_ids))
            .order_by(col(Approval.created_at), col(Approval.id))
        ).all():
            found.setdefault(approval.gate_id, []).append(approval)
    return found


def _identity(config: Config, user_id: str) -> dict[str, Any] | None:
    identity = config.identities.get(user_id)
    return identity.model_dump(mode="json") if identity is not None else None


def _slack_users(*names: str | None) -> set[str]:
    return {name for name in names if name and _SLACK_USER.fullmatch(name)}


def _strings(value: object) -> list[str]:
    """Every string inside a JSON value (to find the people a break-glass record names)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def _details(raw: str) -> Any:
    """The record's details as JSON; a row that no longer parses is shown as it is stored."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {"unreadable": raw}


def _jsonable(value: Any) -> Any:
    """A stored JSON column as plain JSON (a copy, so the pack never aliases the row)."""
    return None if value is None else json.loads(json.dumps(value, default=str))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_at(moment)
