"""GitHub webhook payloads -> DeployEvent (pure functions; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from bot.domain.gates.pipeline import REVIEWED_ENVIRONMENTS
from integrations.payloads import (
    PayloadError,
    optional_str,
    require_mapping,
    require_sha,
    require_str,
)

HANDLED_EVENTS = frozenset(
    {
        "ping",
        "deployment",
        "deployment_status",
        "workflow_run",
        "deployment_protection_rule",
        "deployment_review",
    }
)

# deployment_review.action -> what the review says about the deployment: an approval lets the
# job go (nothing has run yet: pending); a rejection fails it before it ran.
REVIEW_STATUS: dict[str, str] = {"approved": states.PENDING, "rejected": states.FAILED}

# deployment_status.state -> our state; None means the status says nothing we track.
DEPLOYMENT_STATUS: dict[str, str | None] = {
    "queued": states.PENDING,
    "pending": states.PENDING,
    "waiting": states.PENDING,
    "in_progress": states.IN_PROGRESS,
    "success": states.SUCCEEDED,
    "failure": states.FAILED,
    "error": states.FAILED,
    "inactive": None,
}

WORKFLOW_CONCLUSION: dict[str, str | None] = {
    "success": states.SUCCEEDED,
    "failure": states.FAILED,
    "timed_out": states.FAILED,
    "cancelled": states.FAILED,
    "startup_failure": states.FAILED,
    "action_required": states.PENDING,
    "neutral": None,
    "skipped": None,
    "stale": None,
}


@dataclass(frozen=True)
class Parsed:
    """What a delivery means: a DeployEvent, or nothing to track and why."""

    event: DeployEvent | None
    note: str | None = None


def parse(event_name: str, payload: Any) -> Parsed:
    """Turn one GitHub delivery into a DeployEvent; raises PayloadError on a malformed body."""
    body = require_mapping(payload, "")
    if event_name == "ping":
        return Parsed(None, f"ping: {optional_str(body, 'zen') or 'hello'}")
    if event_name == "deployment":
        return _deployment(body)
    if event_name == "deployment_status":
        return _deployment_status(body)
    if event_name == "workflow_run":
        return _workflow_run(body)
    if event_name == "deployment_protection_rule":
        return _protection_rule(body)
    if event_name == "deployment_review":
        return _deployment_review(body)
    return Parsed(None, f"event {event_name!r} is not tracked")


def _repo(body: Any) -> str:
    return require_str(body, "repository.full_name")


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _version(deployment: Any) -> str | None:
    payload = deployment.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("version"), str | int):
        return str(payload["version"])
    return optional_str(deployment, "ref")


def _deployment(body: Any) -> Parsed:
    action = optional_str(body, "action")
    if action not in (None, "created"):
        return Parsed(None, f"deployment action {action!r} is not tracked")
    deployment = require_mapping(body, "deployment")
    target = DeployTarget(
        provider="github",
        repo=_repo(body),
        environment=require_str(body, "deployment.environment"),
        workflow=optional_str(body, "workflow_run.path") or optional_str(body, "workflow.path"),
    )
    return Parsed(
        DeployEvent(
            target=target,
            sha=require_sha(body, "deployment.sha", "workflow_run.head_sha"),
            status=states.PENDING,
            source_event="github.deployment",
            external_id=f"deployment:{require_str(body, 'deployment.id')}",
            ref=optional_str(deployment, "ref"),
            version=_version(deployment),
            url=optional_str(body, "workflow_run.html_url"),
            actor=optional_str(body, "deployment.creator.login"),
            description=optional_str(deployment, "description"),
            occurred_at=_when(optional_str(deployment, "created_at")),
        )
    )


def _deployment_status(body: Any) -> Parsed:
    deployment = require_mapping(body, "deployment")
    state = require_str(body, "deployment_status.state")
    if state not in DEPLOYMENT_STATUS:
        raise PayloadError("deployment_status.state", f"has an unknown value {state!r}")
    status = DEPLOYMENT_STATUS[state]
    if status is None:
        return Parsed(None, f"deployment status {state!r} is not tracked")
    environment = optional_str(body, "deployment_status.environment") or require_str(
        body, "deployment.environment"
    )
    target = DeployTarget(
        provider="github",
        repo=_repo(body),
        environment=environment,
        workflow=optional_str(body, "workflow_run.path") or optional_str(body, "workflow.path"),
    )
    url = (
        optional_str(body, "deployment_status.target_url")
        or optional_str(body, "deployment_status.log_url")
        or optional_str(body, "workflow_run.html_url")
    )
    return Parsed(
        DeployEvent(
            target=target,
            sha=require_sha(body, "deployment.sha", "workflow_run.head_sha"),
            status=status,
            source_event="github.deployment_status",
            external_id=f"deployment:{require_str(body, 'deployment.id')}",
            ref=optional_str(deployment, "ref"),
            version=_version(deployment),
            url=url,
            actor=optional_str(body, "deployment.creator.login"),
            description=optional_str(body, "deployment_status.description"),
            occurred_at=_when(optional_str(body, "deployment_status.created_at")),
        )
    )


def _workflow_run(body: Any) -> Parsed:
    run = require_mapping(body, "workflow_run")
    status = require_str(body, "workflow_run.status")
    conclusion = optional_str(run, "conclusion")
    ours: str | None
    if status == "completed":
        ours = WORKFLOW_CONCLUSION.get(conclusion or "", None)
        if ours is None:
            return Parsed(None, f"workflow run concluded {conclusion!r}: nothing to track")
    elif status == "in_progress":
        ours = states.IN_PROGRESS
    else:  # requested, queued, waiting, pending
        ours = states.PENDING
    target = DeployTarget(
        provider="github",
        repo=_repo(body),
        workflow=require_str(body, "workflow_run.path"),
    )
    return Parsed(
        DeployEvent(
            target=target,
            sha=require_sha(body, "workflow_run.head_sha"),
            status=ours,
            source_event="github.workflow_run",
            external_id=f"run:{require_str(body, 'workflow_run.id')}",
            ref=optional_str(run, "head_branch"),
            url=optional_str(run, "html_url"),
            actor=optional_str(body, "workflow_run.triggering_actor.login")
            or optional_str(body, "workflow_run.actor.login")
            or optional_str(body, "sender.login"),
            description=optional_str(run, "display_title"),
            occurred_at=_when(optional_str(run, "updated_at")),
            extra={"run_attempt": optional_str(run, "run_attempt") or "1"},
        )
    )


def _protection_rule(body: Any) -> Parsed:
    """GitHub asks our App whether a job may deploy to an environment; it waits for the answer.

    The decision goes back to `deployment_callback_url` with an installation token.
    """
    action = optional_str(body, "action")
    if action not in (None, "requested"):
        return Parsed(None, f"deployment_protection_rule action {action!r} is not tracked")
    environment = require_str(body, "environment")
    callback = require_str(body, "deployment_callback_url")
    if not callback.startswith("https://") and not callback.startswith("http://"):
        raise PayloadError("deployment_callback_url", "must be a URL")
    run_url = None
    marker = "/deployment_protection_rule"
    if callback.endswith(marker) and "/repos/" in callback:
        path = callback[callback.index("/repos/") + len("/repos/") : -len(marker)]
        run_url = f"https://github.com/{path}"
    return Parsed(
        DeployEvent(
            target=DeployTarget(provider="github", repo=_repo(body), environment=environment),
            sha=require_sha(body, "deployment.sha"),
            status=states.PENDING,
            source_event="github.deployment_protection_rule",
            external_id=_optional_id(body, "deployment.id"),
            ref=optional_str(body, "deployment.ref"),
            url=run_url,
            actor=optional_str(body, "deployment.creator.login")
            or optional_str(body, "sender.login"),
            gate=GateRequest(
                decide_via="github_protection_rule",
                context={
                    "callback_url": callback,
                    "installation_id": require_str(body, "installation.id"),
                    "environment_name": environment,
                },
            ),
        )
    )


def _deployment_review(body: Any) -> Parsed:
    """Someone approved or rejected a job waiting on an environment's required reviewers,
    in GitHub's UI: a releasebot gate waiting for the same run's deployment there is decided
    by them (`decided_by`), as GitHub decided it.

    `requested` (a job starts waiting for reviewers) is not tracked: the deployment and its
    gate come from the deployment events and the protection rule. The event's environment
    is the first of `workflow_job_runs` (else `workflow_job_run`); a review covering several
    lists them all in `extra["environments"]` (one per line), and each is decided by it.
    """
    action = require_str(body, "action")
    if action not in REVIEW_STATUS:
        return Parsed(None, f"deployment_review action {action!r} is not tracked")
    run = require_mapping(body, "workflow_run")
    login = optional_str(body, "approver.login") or optional_str(body, "sender.login")
    if not login:
        raise PayloadError("approver.login", "is required to say who decided")
    comment = optional_str(body, "comment")
    environments = _reviewed_environments(body)
    extra = {"review": action, "run_id": require_str(body, "workflow_run.id")}
    if len(environments) > 1:
        extra[REVIEWED_ENVIRONMENTS] = "\n".join(environments)
    return Parsed(
        DeployEvent(
            target=DeployTarget(
                provider="github",
                repo=_repo(body),
                environment=environments[0],
                workflow=optional_str(run, "path"),
            ),
            sha=require_sha(body, "workflow_run.head_sha"),
            status=REVIEW_STATUS[action],
            source_event="github.deployment_review",
            ref=optional_str(run, "head_branch"),
            url=optional_str(run, "html_url"),
            description=comment,
            occurred_at=_when(optional_str(body, "since")),
            extra=extra,
            decided_by=login,
        )
    )


def _reviewed_environments(body: Any) -> list[str]:
    """Every environment the review covered, each once, in `workflow_job_runs` order (else
    the one of `workflow_job_run`)."""
    jobs = body.get("workflow_job_runs")
    found: list[str] = []
    for index, job in enumerate(jobs if isinstance(jobs, list) else []):
        if isinstance(job, dict) and job.get("environment") is not None:
            environment = job["environment"]
            if not isinstance(environment, str) or not environment or "\n" in environment:
                raise PayloadError(f"workflow_job_runs[{index}].environment", "must be a string")
            if environment not in found:
                found.append(environment)
    if found:
        return found
    if body.get("workflow_job_run") is not None:
        return [require_str(body, "workflow_job_run.environment")]
    raise PayloadError("workflow_job_runs", "names no environment that was reviewed")


def _optional_id(body: Any, path: str) -> str | None:
    value = optional_str(body, path)
    return f"deployment:{value}" if value else None
