"""Signing and payload helpers: requests built the way GitHub and Slack build them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import Engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"  # the specification folder, beside a checkout in CI
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # copies of the published payloads (SOURCES.md)
EXAMPLE_CONFIG = REPO_ROOT / "examples" / "releasebot.yaml"

GITHUB_SECRET = "It's a Secret to Everybody"
SLACK_SIGNING_SECRET = "slack-signing-secret-for-tests"
SLACK_TOKEN = "xoxb-test-token"

# The workspace the fake Slack Web API knows (users.info, usergroups.users.list).
SLACK_USERS: dict[str, dict[str, Any]] = {
    "U0RM1": {"name": "rita", "profile": {"email": "rita@acme.example"}},
    "U0RM2": {"name": "ravi", "profile": {"email": "ravi@acme.example"}},
    "U0OWNER01": {"name": "olga", "profile": {"email": "olga@acme.example"}},
    "U0SRE1": {"name": "sam", "profile": {"email": "sam@acme.example"}},
    "U0BOTH": {"name": "bea", "profile": {"email": "bea@acme.example"}},
    "U0STRANGER": {"name": "stan", "profile": {"email": "stan@acme.example"}},
}
SLACK_GROUPS: dict[str, list[str]] = {
    "S0RELMGRS": ["U0RM1", "U0RM2", "U0OWNER01", "U0BOTH"],
    "S0SREGRPS": ["U0SRE1", "U0BOTH"],
    "S0ONCALL1": ["U0SRE1"],
}

SHA_A = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
SHA_B = "9e602444f49b8b69c3a9a51fa97a115f3d323508"


def fixture(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / provider / name).read_text())
    return data


def fixture_files(provider: str) -> list[Path]:
    return sorted((FIXTURES / provider).glob("*.json"))


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(
    event: str, body: bytes, *, delivery: str | None = None, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": github_signature(body, secret),
        "user-agent": "GitHub-Hookshot/test",
    }


def deployment_status(
    state: str,
    *,
    repo: str = "acme/checkout",
    environment: str = "production",
    sha: str = SHA_A,
    deployment_id: int = 145988746,
    creator: str = "Codertocat",
) -> dict[str, Any]:
    """The published deployment_status fixture, pointed at a configured service."""
    body = copy.deepcopy(fixture("github", "deployment_status__success.json"))
    body["repository"]["full_name"] = repo
    body["deployment"].update(id=deployment_id, sha=sha, environment=environment)
    body["deployment"]["creator"]["login"] = creator
    body["deployment_status"].update(state=state, environment=environment)
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def slack_headers(
    body: bytes,
    *,
    content_type: str,
    timestamp: int | None = None,
    secret: str = SLACK_SIGNING_SECRET,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature,
        "content-type": content_type,
    }


# --- GitLab, Argo CD, Jenkins and generic webhooks ----------------------------------------

GITLAB_TOKEN = "gitlab-webhook-token-for-tests"
ARGOCD_SECRET = "argocd-webhook-secret-for-tests"
JENKINS_SECRET = "jenkins-webhook-secret-for-tests"
GENERIC_SECRET = "generic-webhook-secret-for-tests"


def releasebot_signature(body: bytes, secret: str) -> str:
    """`X-Releasebot-Signature` (generic, Jenkins): GitHub's scheme with our header name."""
    return github_signature(body, secret)


def gitlab_headers(
    event: str, *, delivery: str | None = None, token: str = GITLAB_TOKEN
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-gitlab-event": event,
        "x-gitlab-token": token,
        "x-gitlab-event-uuid": str(uuid.uuid4()),
        "idempotency-key": delivery or str(uuid.uuid4()),
        "user-agent": "GitLab/17.6.0",
    }


def gitlab_job(
    status: str,
    *,
    repo: str = "acme/ledger",
    environment: str = "production",
    sha: str = SHA_A,
    build_id: int = 3580121225,
) -> dict[str, Any]:
    """The published Job Hook fixture, pointed at a configured service."""
    body = copy.deepcopy(fixture("gitlab", "job_hook__go-gitlab-success.json"))
    body.update(build_status=status, sha=sha, build_id=build_id)
    body["project"] = {"id": 31537070, "path_with_namespace": repo}
    body["repository"]["homepage"] = f"https://gitlab.example/{repo}"
    body["environment"]["name"] = environment
    return body


def argocd_headers(*, token: str = ARGOCD_SECRET, delivery: str | None = None) -> dict[str, str]:
    headers = {"content-type": "application/json", "x-releasebot-token": token}
    if delivery is not None:
        headers["x-releasebot-delivery"] = delivery
    return headers


def argocd_body(
    event: str,
    *,
    app: str = "storefront-prod",
    revision: str | None = SHA_A,
    started_at: str = "2026-11-17T09:58:00Z",
    finished_at: str | None = "2026-11-17T09:59:30Z",
) -> dict[str, Any]:
    """A body as the templates of docs/argocd-notifications.md render it."""
    phase = {"sync-running": "Running", "sync-failed": "Failed"}.get(event, "Succeeded")
    return {
        "event": event,
        "app": app,
        "revision": revision,
        "syncRevision": revision,
        "phase": phase,
        "health": "Degraded" if event == "health-degraded" else "Healthy",
        "message": "successfully synced (all tasks run)",
        "startedAt": started_at,
        "finishedAt": None if event == "sync-running" else finished_at,
        "initiatedBy": "alice",
        "automated": False,
        "url": f"https://argocd.example/applications/{app}",
    }


def signed_headers(body: bytes, secret: str, *, delivery: str | None = None) -> dict[str, str]:
    """Headers of a generic or Jenkins delivery signed with X-Releasebot-Signature."""
    headers = {
        "content-type": "application/json",
        "x-releasebot-signature": releasebot_signature(body, secret),
    }
    if delivery is not None:
        headers["x-releasebot-delivery"] = delivery
    return headers


def jenkins_build(
    phase: str,
    status: str | None = None,
    *,
    job: str = "payments-deploy",
    number: int = 42,
    sha: str = SHA_A,
    environment: str | None = "production",
) -> dict[str, Any]:
    """The published Notification plugin fixture for another job, phase and result."""
    body = copy.deepcopy(fixture("jenkins", "notification__completed-success-wiki-example.json"))
    body["name"] = job
    body["url"] = f"job/{job}/"
    build = body["build"]
    build.update(
        number=number,
        phase=phase,
        full_url=f"https://jenkins.example/job/{job}/{number}/",
        url=f"job/{job}/{number}/",
    )
    build["scm"]["commit"] = sha
    if status is None:
        build.pop("status", None)
    else:
        build["status"] = status
    if environment is not None:
        build["parameters"] = {"ENVIRONMENT": environment, "VERSION": "v1.4.2"}
    return body


def generic_body(status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    """A CONTRACT.md generic webhook body for payments-batch in production."""
    body: dict[str, Any] = {
        "service": "payments-batch",
        "environment": "production",
        "version": "v2.3.0",
        "sha": SHA_A,
        "status": status,
        "url": "https://ci.example/run/42",
        "actor": "alice",
        "previous_sha": SHA_B,
        "commits": [
            {
                "sha": SHA_A,
                "message": "Batch payouts in one transaction",
                "author": "Alice",
                "timestamp": "2026-11-16T15:04:05+01:00",
            }
        ],
    }
    body.update(fields)
    return body


def example_config_data() -> dict[str, Any]:
    """The canonical example config as plain data, to copy and change in a test."""
    import yaml

    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    return data


def rows(bot: Any, model: Any) -> list[Any]:
    """Every row of `model` in the running bot's database."""
    from sqlmodel import select

    with bot.runtime.db.read() as session:
        return list(session.exec(select(model)).all())


@contextmanager
def database_unreachable(engine: Engine) -> Iterator[None]:
    """The database goes away as in a restart: pooled connections are dropped and new ones
    fail (SQLite: a file that cannot be opened; PostgreSQL: nothing listening)."""

    def refuse(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if engine.dialect.name == "sqlite":
            cargs[:] = ["/nonexistent-releasebot-dir/down.db"]
        else:
            cparams.update(host="127.0.0.1", port=1, connect_timeout=2)

    engine.dispose()
    sa.event.listen(engine, "do_connect", refuse)
    try:
        yield
    finally:
        sa.event.remove(engine, "do_connect", refuse)
        engine.dispose()
