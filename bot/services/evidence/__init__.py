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
                     diff_range: {base, head, url},
                     diff_sha256, diff_sha256_covers, diff_sha256_source,
                     authors: [{login, names, commits, authored, committed, slack_users}]}
    people          [{login, provider, emails, roles: {author, committer, merger, reviewer,
                      deployer: count}, slack_users: [{user_id, email}]}]: everyone on the
                    change as the self-approval ban reads them, with the Slack users mapped
                    to them through `identities` (login, e-mail or GitHub noreply address)
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
                               rules_in_force: {requirement, config_sha256_at_open,
                                                config_sha256_now, same_config, policy},
                               approvals: [{user_id, decision, reason, at, identity}]}]}]
    acts            [{seq, at, action, subject, outcome: recorded|refused, decision, reason,
                      user_id, slack_email, scm_identity}]: every decision, refused click,
                    break-glass step and operation a Slack user made on the release
    freezes         [{deployment_id, environment, at, environments, reason, start, end}]:
                    each configured freeze that covered a deployment's environment at the
                    deployment's created_at (empty: no deployment ran in a freeze)
    break_glass     [{deployment_id, gate_id, requested_by, reason, requested_at,
                      confirmed_by, confirmed_at, valid_until}]: every gate passed (or asked
                    to be passed) by break-glass, as on the gate itself
    verification    [{deployment_id, check_id, name, kind, spec,
                      runs: [{id, due_at, status, finished_at, result}]}]
    flags           [{id, flag, kind, percent, provider, status, requirement, decided_by,
                      receipt, approvals, checks, ...}]: every feature flag step taken from
                    the release's deployments (`bot.services.evidence.flags`)
    receipts        [{seq, at, hash, deployment_id, kind, outbox_id, attempt,
                      receipts: [{platform, ...}]}]: what Slack (ts of each post and edit),
                    the code host (callback answer), the pager (dedup key) and the deployer
                    (run id) answered for each side effect sent
    aftermath       [{deployment_id, state, rolled_back, rollback_to,
                      redeploys: [{deployment_id, release_id, sha, state, verified, ...,
                                   checks, records, receipts}],
                      incident: [audit records incident.opened / incident.resolved]}]
    identities      {slack user id: {github, gitlab, email} or null} for every Slack user
                    who decided, approved or acted on the release (config `identities`)
    audit           {records: [{seq, at, actor, action, subject, details, prev_hash, hash}],
                     stretch: {first_seq, first_prev_hash, first_hash, last_seq, last_hash,
                               records, release_records,
                               checkpoint: {checkpoint, published_to} or null},
                     chain: {verified, first_break, first_break_reason, records_checked,
                             head_seq, head_hash}}

`change.diff_sha256` is the sha256 (hex) of the canonical JSON (sorted keys, no spaces,
UTF-8) of `{"base_sha", "sha", "commits", "diff"}` exactly as they appear in the pack, so an
auditor recomputes it from the pack alone; `diff_sha256_source` says whether the compare's
file list was stored or only the commit list is covered. The audit records are those whose
subject is `deployment:<id>`, `gate:<id>` or `flag_step:<id>` of this release; each `hash`
recomputes with `bot.domain.audit.record_hash`. `stretch` names the first and last record
covering the release (its records, receipts and aftermath) and the first checkpoint
published outside the database that covers its last record (signed when a signing key
is set; the places it went, each with its outbox status), and `chain` says whether the
whole chain verified when the pack was generated, with the head that covers everything before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.config import Config
from bot.domain.config_hash import config_sha256
from bot.services.evidence import flags, people, sections, trail
from bot.services.evidence.sections import FORMAT, diff_sha256, iso
from bot.store.tables import Deployment, Release

__all__ = ["FORMAT", "diff_sha256", "evidence_pack"]


def evidence_pack(
    session: Session, *, release_id: int, config: Config, generated_at: datetime
) -> dict[str, Any]:
    """The evidence pack of one release; raises LookupError if the release does not exist."""
    release = session.get(Release, release_id)
    if release is None or release.id is None:
        raise LookupError(f"release {release_id} not found")
    service = config.services.get(release.service)
    provider = service.provider if service is not None else None
    deployments = list(
        session.exec(
            select(Deployment)
            .where(Deployment.release_id == release.id)
            .order_by(col(Deployment.created_at), col(Deployment.id))
        ).all()
    )
    deployment_ids = [d.id for d in deployments if d.id is not None]
    gates = sections.gates(session, deployment_ids)
    subjects = [f"deployment:{i}" for i in deployment_ids]
    subjects += [f"gate:{g.id}" for found in gates.values() for g in found]
    flag_steps = flags.steps_of(session, deployment_ids)
    subjects += [f"flag_step:{s.id}" for s in flag_steps]
    records = trail.records_of(session, subjects)
    slack_emails = people.slack_emails_in(records)
    docs = _deployments(session, deployments, gates, records, config)
    receipts = trail.receipts(session, deployment_ids)
    aftermath = trail.aftermath(session, deployments)
    seqs = [r["seq"] for r in records] + [r["seq"] for r in receipts]
    seqs += [r["seq"] for a in aftermath for d in a["redeploys"] for r in d["records"]]
    seqs += [r["seq"] for a in aftermath for d in a["redeploys"] for r in d["receipts"]]
    return {
        "format": FORMAT,
        "generated_at": iso(generated_at),
        "release": {
            "id": release.id,
            "service": release.service,
            "repo": service.repo if service is not None else None,
            "sha": release.sha,
            "version": release.version,
            "ref": release.ref,
            "created_at": iso(release.created_at),
        },
        "change": sections.change(release, config, provider=provider),
        "people": people.people_on_the_change(
            session, deployments, config=config, provider=provider, slack_emails=slack_emails
        ),
        "production": sections.production(deployments, config),
        "deployments": docs["deployments"],
        "acts": people.acts(records, config=config, slack_emails=slack_emails),
        "freezes": docs["freezes"],
        "break_glass": docs["break_glass"],
        "verification": sections.verification(session, deployment_ids),
        "flags": flags.section(session, flag_steps),
        "receipts": receipts,
        "aftermath": aftermath,
        "identities": {user: sections.identity(config, user) for user in sorted(docs["people"])},
        "audit": {
            "records": records,
            "stretch": trail.stretch(session, seqs),
            "chain": trail.chain(session),
        },
    }


def _deployments(
    session: Session,
    deployments: list[Deployment],
    gates: dict[int, list[Any]],
    records: list[dict[str, Any]],
    config: Config,
) -> dict[str, Any]:
    """The deployments with their gates, the freezes and break-glass they met, and the Slack
    users who acted on them."""
    approvals = sections.approvals(session, [g.id for gs in gates.values() for g in gs if g.id])
    opened = {
        r["subject"]: r["details"].get("config_sha256")
        for r in records
        if r["action"] == "gate.opened" and isinstance(r["details"], dict)
    }
    now_hash = config_sha256(config)
    users: set[str] = set()
    found: dict[str, list[dict[str, Any]]] = {"deployments": [], "freezes": [], "break_glass": []}
    for deployment in deployments:
        assert deployment.id is not None
        gate_docs = []
        for gate in gates.get(deployment.id, []):
            assert gate.id is not None
            votes = approvals.get(gate.id, [])
            users.update(a.user_id for a in votes)
            users.update(sections.slack_users(gate.decided_by, gate.requested_by))
            if gate.break_glass:
                users.update(sections.slack_users(*sections.strings(gate.break_glass)))
                found["break_glass"].append(
                    {
                        "deployment_id": deployment.id,
                        "gate_id": gate.id,
                        **sections.break_glass_doc(gate.break_glass),
                    }
                )
            doc = sections.gate_doc(gate, votes, config)
            doc["rules_in_force"] = _rules(
                config, deployment, doc, opened.get(f"gate:{gate.id}"), now_hash
            )
            gate_docs.append(doc)
        users.update(sections.slack_users(deployment.deployer))
        production = config.is_production(deployment.service, deployment.environment)
        found["deployments"].append(
            sections.deployment_doc(deployment, gate_docs, production=production)
        )
        found["freezes"].extend(sections.freezes_for(deployment, config.freezes, production))
    users.update(sections.slack_users(*(r["actor"] for r in records)))
    return {**found, "people": users}


def _rules(
    config: Config,
    deployment: Deployment,
    gate: dict[str, Any],
    at_open: str | None,
    now_hash: str,
) -> dict[str, Any]:
    """The rules the gate was decided by: the requirement it stored, the configuration's hash
    when it opened and now, and the environment's gate policy (from the configuration the
    pack was built with; `same_config` says whether that is the one in force at opening)."""
    service = config.services.get(deployment.service)
    env = service.environment(deployment.environment) if service is not None else None
    policy = env.gate.model_dump(mode="json") if env is not None and env.gate else None
    return {
        "requirement": gate["requirement"],
        "config_sha256_at_open": at_open,
        "config_sha256_now": now_hash,
        "same_config": at_open == now_hash if at_open is not None else None,
        "policy": policy,
    }
