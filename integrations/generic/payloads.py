"""Generic webhook payloads (CONTRACT.md "Generic webhook") -> DeployEvent (pure; no I/O).

    {"service": "payments-batch", "environment": "production", "version": "v2.3.0",
     "sha": "<40 hex>", "status": "started|succeeded|failed", "url": "https://ci.example/run/42",
     "actor": "alice", "actor_login": "code-host login, optional", "actor_email": "optional",
     "previous_sha": "<40 hex, optional>",
     "commits": [{"sha": "...", "message": "...", "author": "...", "timestamp": "ISO",
                  "login": "code-host login, optional", "email": "optional"}]}

service, environment and status are required, and sha or version (or both); url, actor,
actor_login, actor_email, previous_sha and commits (and each commit's login and email) may
be left out, but a field that is present must have the right shape. Every problem is a
PayloadError naming the field, e.g. `commits[2].timestamp`.

A deploy named by its version only (a Helm chart version, an image tag or digest, with no
`sha`) is a release keyed `v:<version>` (`bot.domain.ingest.version_key`): it is correlated,
superseded and rolled back by that version, and no commit list is asked of the code host.

`actor` is who deployed as the CI names them (shown in Slack); `actor_login` and
`actor_email` name the same person on the code host, so the self-approval ban recognises
them. Without `actor`, the login (else the e-mail) is shown.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget
from bot.domain.ingest import version_key
from bot.ports import Commit
from integrations.payloads import PayloadError, require_mapping, require_sha

STATUS: dict[str, str] = {
    "started": states.IN_PROGRESS,
    "succeeded": states.SUCCEEDED,
    "failed": states.FAILED,
}

NAME_MAX = 200
URL_MAX = 2000
MESSAGE_MAX = 10_000
EMAIL_MAX = 320


@dataclass(frozen=True)
class Parsed:
    """The DeployEvent, and what it cannot carry: the release's commits and the base sha."""

    event: DeployEvent | None
    note: str | None = None
    commits: tuple[Commit, ...] = field(default=())
    previous_sha: str | None = None


def parse(payload: Any) -> Parsed:
    """Turn one generic delivery into a DeployEvent; raises PayloadError on a malformed body."""
    body = require_mapping(payload, "")
    service = _required(body, "service")
    environment = _required(body, "environment")
    version = _text(body, "version")
    sha = _release_key(body, version)
    raw_status = _required(body, "status")
    if raw_status not in STATUS:
        raise PayloadError("status", f"must be one of {', '.join(STATUS)}")
    url = _url(body, "url")
    has_previous = body.get("previous_sha") not in (None, "")
    previous_sha = require_sha(body, "previous_sha") if has_previous else None
    actor_login = _text(body, "actor_login")
    actor_email = _email(body, "actor_email")
    return Parsed(
        DeployEvent(
            target=DeployTarget(provider="generic", service=service, environment=environment),
            sha=sha,
            status=STATUS[raw_status],
            source_event="generic.deploy",
            # A new CI run (a new url) of a version that failed starts a new attempt.
            external_id=("run:" + hashlib.sha256(url.encode()).hexdigest()[:32]) if url else None,
            version=version,
            url=url,
            actor=_text(body, "actor") or actor_login or actor_email,
            extra=_actor_extra(actor_login, actor_email),
        ),
        commits=_commits(body),
        previous_sha=previous_sha,
    )


def _release_key(body: Any, version: str | None) -> str:
    """The commit sha, else (no sha at all) the version's key; a sha that is present must be
    a full one."""
    if body.get("sha") in (None, "") and version is not None:
        if not version.strip():
            raise PayloadError("version", "must not be blank")
        return version_key(version)
    if body.get("sha") in (None, ""):
        raise PayloadError("sha", "is required (or a version, for a deploy without a commit)")
    return require_sha(body, "sha")


def _text(
    data: Any, key: str, *, where: str = "", limit: int = NAME_MAX, allow_empty: bool = False
) -> str | None:
    """`data[key]` as a string of at most `limit` characters; None when absent."""
    name = f"{where}{key}"
    value = data.get(key)
    if value is None or (value == "" and not allow_empty):
        return None
    if not isinstance(value, str):
        raise PayloadError(name, "must be a string")
    if len(value) > limit:
        raise PayloadError(name, f"must be at most {limit} characters")
    return value


def _required(
    data: Any, key: str, *, where: str = "", limit: int = NAME_MAX, allow_empty: bool = False
) -> str:
    value = _text(data, key, where=where, limit=limit, allow_empty=allow_empty)
    if value is None:
        raise PayloadError(f"{where}{key}")
    return value


def _email(data: Any, key: str, *, where: str = "") -> str | None:
    value = _text(data, key, where=where, limit=EMAIL_MAX)
    if value is not None and "@" not in value:
        raise PayloadError(f"{where}{key}", "must be an e-mail address")
    return value


def _actor_extra(login: str | None, email: str | None) -> dict[str, str]:
    """The deployer's login and e-mail as the event carries them to the deployment."""
    found = {"actor_login": login, "actor_email": email}
    return {key: value for key, value in found.items() if value}


def _url(data: Any, key: str) -> str | None:
    value = _text(data, key, limit=URL_MAX)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PayloadError(key, "must be an http or https URL")
    return value


def _commits(body: Any) -> tuple[Commit, ...]:
    items = body.get("commits")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise PayloadError("commits", "must be a list")
    commits: list[Commit] = []
    for index, item in enumerate(items):
        where = f"commits[{index}]."
        if not isinstance(item, dict):
            raise PayloadError(f"commits[{index}]", "must be a JSON object")
        try:
            sha = require_sha(item, "sha")
        except PayloadError as exc:
            raise PayloadError(f"{where}sha", exc.problem) from None
        message = _required(item, "message", where=where, limit=MESSAGE_MAX, allow_empty=True)
        author = _required(item, "author", where=where)
        stamp = _required(item, "timestamp", where=where, limit=64)
        commits.append(
            Commit(
                sha=sha,
                message=message,
                author=author,
                author_login=_text(item, "login", where=where),
                author_email=_text(item, "email", where=where, limit=EMAIL_MAX),
                authored_at=_timestamp(stamp, f"{where}timestamp"),
            )
        )
    return tuple(commits)


def _timestamp(value: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(name, "must be an ISO 8601 time") from None
    if when.tzinfo is None:
        raise PayloadError(name, "must be an ISO 8601 time with a UTC offset")
    return when
