"""The people sections of the evidence pack: everyone on the change, and every act of a
person on the release (decisions, refused clicks, break-glass, operations).

People on the change are read through `gate_reads.release_people`, the same reading the
self-approval ban uses, so every role it knows (authors, committers, mergers, reviewers,
deployers, and any role added there later) appears here without a change to this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from sqlmodel import Session

from bot.config import Config, Identity
from bot.domain.gates import ReleasePeople, noreply_login
from bot.services.evidence.sections import SLACK_USER, identity
from bot.services.gate_reads import release_people
from bot.store.tables import Deployment

EMAILS = "_emails"
NOT_NAMES = frozenset({"approvers", "unknown"})  # read apart: per-change logins, a reason


def people_on_the_change(
    session: Session,
    deployments: Iterable[Deployment],
    *,
    config: Config,
    provider: str | None,
    slack_emails: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One entry per person (login, or e-mail when the host named no login):

    {login, provider, emails, roles: {author: commits, committer: commits, merger: n,
     reviewer: n, deployer: n}, slack_users: [{user_id, email}]}
    """
    found: dict[str, dict[str, Any]] = {}
    for deployment in deployments:
        for role, login, email in _entries(release_people(session, deployment)):
            key = (login or email).casefold()
            entry = found.setdefault(
                key,
                {
                    "login": login or None,
                    "provider": None if SLACK_USER.fullmatch(login) else provider,
                    "emails": [],
                    "roles": {},
                },
            )
            if email and email not in entry["emails"]:
                entry["emails"].append(email)
            if role == "deployer" and role in entry["roles"]:
                continue  # one deployer per release, however many deployments it had
            entry["roles"][role] = entry["roles"].get(role, 0) + 1
    for entry in found.values():
        users = _slack_users_of(entry["login"], entry["emails"], config, provider)
        entry["emails"].sort()
        entry["slack_users"] = [
            {"user_id": user, "email": _slack_email(user, config, slack_emails)}
            for user in sorted(users)
        ]
    return [found[key] for key in sorted(found)]


def acts(
    records: Iterable[Mapping[str, Any]], *, config: Config, slack_emails: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every audit record a Slack user is the actor of: approvals and rejections recorded,
    refused clicks, break-glass, promotions and rollbacks asked for, with who they are."""
    found = []
    for record in records:
        user = str(record["actor"])
        if not SLACK_USER.fullmatch(user):
            continue
        details = record["details"] if isinstance(record["details"], Mapping) else {}
        action = str(record["action"])
        found.append(
            {
                "seq": record["seq"],
                "at": record["at"],
                "action": action,
                "subject": record["subject"],
                "outcome": "refused" if action.endswith("_refused") else "recorded",
                "decision": details.get("decision") or _decision(action),
                "reason": details.get("reason"),
                "user_id": user,
                "slack_email": details.get("email") or _slack_email(user, config, slack_emails),
                "scm_identity": identity(config, user),
            }
        )
    return found


def slack_emails_in(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The e-mail Slack reported for each user, as the audit records of their acts hold it."""
    found: dict[str, str] = {}
    for record in records:
        details = record["details"]
        if isinstance(details, Mapping) and isinstance(details.get("email"), str):
            found.setdefault(str(record["actor"]), details["email"])
    return found


def _entries(people: ReleasePeople) -> Iterable[tuple[str, str, str]]:
    """(role, login, e-mail) for every name of every role `ReleasePeople` holds; approving
    reviewers (one tuple of logins per change) count as `reviewer`."""
    for field in dataclasses.fields(people):
        if field.name.endswith(EMAILS) or field.name in NOT_NAMES:
            continue
        names = tuple(getattr(people, field.name))
        role = field.name.removesuffix("s")
        emails = tuple(getattr(people, f"{role}{EMAILS}", ()) or ())
        if len(emails) != len(names):
            emails = ("",) * len(names)
        for name, email in zip(names, emails, strict=True):
            login = str(name).strip()
            if login or str(email).strip():
                yield role, login, str(email).strip()
    for change in people.approvers:
        for login in change:
            if login.strip():
                yield "reviewer", login.strip(), ""


def _slack_users_of(
    login: str | None, emails: list[str], config: Config, provider: str | None
) -> set[str]:
    """The Slack users a code-host person maps to through `identities` (login, e-mail or
    GitHub's noreply address), or the Slack user themself when the bot deployed for them."""
    if login and SLACK_USER.fullmatch(login):
        return {login}
    logins = {login.casefold()} if login else set()
    logins |= {found.casefold() for e in emails if (found := noreply_login(e))}
    addresses = {e.casefold() for e in emails}
    return {
        user
        for user, mapped in config.identities.items()
        if _login_of(mapped, provider) in logins
        or (mapped.email or "").casefold() in addresses - {""}
    }


def _login_of(mapped: Identity, provider: str | None) -> str:
    value = getattr(mapped, provider, None) if provider else None
    return str(value or "").casefold() or "\0"


def _slack_email(user: str, config: Config, slack_emails: Mapping[str, str]) -> str | None:
    """The e-mail Slack reported for the user (audited with their acts), else the one their
    `identities` entry lists, else None."""
    if user in slack_emails:
        return slack_emails[user]
    mapped = config.identities.get(user)
    return mapped.email if mapped is not None else None


def _decision(action: str) -> str | None:
    """approve / reject from `gate.approve_recorded`-style actions, else None."""
    name = action.rpartition(".")[2]
    for decision in ("approve", "reject"):
        if name.startswith(decision):
            return decision
    return None
