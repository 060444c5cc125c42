"""GitLab webhook payloads -> DeployEvent (pure functions; no I/O).

GitLab tracks deployments by environment name: a Pipeline Hook lists the pipeline's jobs with
their `environment`, a Job Hook carries the job's own `environment`, and a Deployment Hook names
the environment but only a short sha (the full one needs the deployments API: see
`GitLabDeploymentRef`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.domain import states
from bot.domain.events import DeployEvent, DeployTarget, GateRequest
from integrations.payloads import (
    PayloadError,
    get_path,
    optional_str,
    require_mapping,
    require_sha,
    require_str,
)

PIPELINE_HOOK = "Pipeline Hook"
JOB_HOOK = "Job Hook"
DEPLOYMENT_HOOK = "Deployment Hook"
HANDLED_EVENTS = frozenset({PIPELINE_HOOK, JOB_HOOK, DEPLOYMENT_HOOK})

# Job (and pipeline) status -> our state; None means the job did not run and says nothing.
JOB_STATUS: dict[str, str | None] = {
    "created": states.PENDING,
    "pending": states.PENDING,
    "waiting_for_resource": states.PENDING,
    "waiting_for_callback": states.PENDING,
    "preparing": states.PENDING,
    "scheduled": states.PENDING,
    "manual": states.PENDING,
    "running": states.IN_PROGRESS,
    "success": states.SUCCEEDED,
    "failed": states.FAILED,
    "canceled": states.FAILED,
    "canceling": states.FAILED,
    "skipped": None,
}

# Deployment status (Deployment Hook, deployments API) -> our state.
DEPLOYMENT_STATUS: dict[str, str | None] = {
    "created": states.PENDING,
    "blocked": states.PENDING,
    "running": states.IN_PROGRESS,
    "success": states.SUCCEEDED,
    "failed": states.FAILED,
    "canceled": states.FAILED,
    "skipped": None,
}

# environment.action values that deploy; prepare/verify/access/stop jobs deploy nothing.
DEPLOYING_ACTIONS = frozenset({"start"})

# The deployer that carries a Slack decision to a deployment waiting for approval, and the
# gate context it reads (`integrations/deployers/gitlab_approval.py`).
APPROVAL_DEPLOYER = "gitlab_deployment_approval"
CONTEXT_PROJECT = "gitlab_project"
CONTEXT_DEPLOYMENT = "gitlab_deployment_id"
CONTEXT_ENVIRONMENT = "gitlab_environment"
# A deployment waits for approval: `blocked` in the Deployments API, its job in `manual`.
BLOCKED = "blocked"
MANUAL = "manual"

SHORT_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(Z|UTC|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class GitLabDeploymentRef:
    """A Deployment Hook: everything it says, short of the full commit sha.

    `GET /projects/:project_id/deployments/:deployment_id` returns the full `sha` and `ref`;
    with those a worker can build the DeployEvent (`event_for(ref, sha=..., ref_name=...)`).
    """

    project_id: int
    project_path: str
    deployment_id: int
    status: str  # one of our CI-reported states
    environment: str
    short_sha: str
    url: str | None  # deployable_url: the job that deployed (None for API/trigger deploys)
    actor: str | None
    commit_url: str | None
    commit_title: str | None
    occurred_at: datetime | None = None
    blocked: bool = False  # the hook said `blocked`: the deployment waits for approval


@dataclass(frozen=True)
class WaitingJob:
    """A Job Hook for a deploying job in `manual`: it may be a deployment waiting for
    approval, whose id only the Deployments API knows (the newest `blocked` deployment of
    `environment` at the job's sha). `event` asks for a gate without that id yet."""

    project: str  # the project id (or its path when the hook carries no id)
    environment: str
    event: DeployEvent


@dataclass(frozen=True)
class Parsed:
    """What a delivery means: a DeployEvent, or nothing to track and why.

    `events` holds one event per deploying environment of a pipeline, most telling first
    (`event` is the first of them); `lookup` is a Deployment Hook whose full sha is still to
    be looked up.
    """

    event: DeployEvent | None
    note: str | None = None
    lookup: GitLabDeploymentRef | None = None
    events: tuple[DeployEvent, ...] = field(default=())
    waiting: WaitingJob | None = None


def parse(event_name: str, payload: Any) -> Parsed:
    """Turn one GitLab delivery into a DeployEvent; raises PayloadError on a malformed body."""
    body = require_mapping(payload, "")
    if event_name == PIPELINE_HOOK:
        return _pipeline(body)
    if event_name == JOB_HOOK:
        return _job(body)
    if event_name == DEPLOYMENT_HOOK:
        return _deployment(body)
    return Parsed(None, f"event {event_name!r} is not tracked")


def pending_event(ref: GitLabDeploymentRef) -> DeployEvent:
    """The event of a Deployment Hook with the short sha in place of the full one."""
    return _deployment_event(ref, sha=ref.short_sha, ref_name=None)


def event_for(ref: GitLabDeploymentRef, *, sha: str, ref_name: str | None = None) -> DeployEvent:
    """The DeployEvent of a Deployment Hook once its full sha is known (from the API)."""
    full = require_sha({"sha": sha}, "sha")
    if not full.startswith(ref.short_sha):
        raise PayloadError("sha", f"does not start with the hook's short sha {ref.short_sha}")
    return _deployment_event(ref, sha=full, ref_name=ref_name)


def approval_gate(
    project: str | int, environment: str, deployment_id: int | None = None
) -> GateRequest:
    """The gate a deployment waiting for approval asks for: decided through the approval
    deployer, which needs the project and the deployment id (filled in once known)."""
    context = {CONTEXT_PROJECT: str(project), CONTEXT_ENVIRONMENT: environment}
    if deployment_id is not None:
        context[CONTEXT_DEPLOYMENT] = str(deployment_id)
    return GateRequest(decide_via=APPROVAL_DEPLOYER, context=context)


def _deployment_event(ref: GitLabDeploymentRef, *, sha: str, ref_name: str | None) -> DeployEvent:
    gate = (
        approval_gate(ref.project_id, ref.environment, ref.deployment_id) if ref.blocked else None
    )
    return DeployEvent(
        target=DeployTarget(provider="gitlab", repo=ref.project_path, environment=ref.environment),
        sha=sha,
        status=ref.status,
        source_event="gitlab.deployment",
        external_id=f"deployment:{ref.deployment_id}",
        ref=ref_name,
        url=ref.url,
        actor=ref.actor,
        description=ref.commit_title,
        occurred_at=ref.occurred_at,
        gate=gate,
    )


def _when(value: str | None) -> datetime | None:
    """GitLab's times: ISO 8601, `2016-08-12 15:23:28 UTC` or `2021-04-28 21:50:00 +0200`."""
    if not value:
        return None
    match = _TIME_RE.match(value.strip())
    if match is None:
        return None
    day, clock, zone = match.groups()
    if zone in (None, "Z", "UTC"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        when = datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError:
        return None
    return when.astimezone(UTC)


def _require_int(data: Any, path: str) -> int:
    value = get_path(data, path)
    if value is None or value == "":
        raise PayloadError(path)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PayloadError(path, "must be an integer")
    try:
        return int(value)
    except ValueError:
        raise PayloadError(path, "must be an integer") from None


def _status(table: dict[str, str | None], data: Any, path: str) -> tuple[str, str | None]:
    """(GitLab's status, ours or None). A status GitLab adds later is not tracked, not a 400:
    GitLab disables a hook that keeps failing."""
    value = require_str(data, path)
    return value, table.get(value)


def _deploys(environment: Any) -> bool:
    """A job's `environment` that deploys: it has a name and starts (not stops) it."""
    if not isinstance(environment, dict) or not optional_str(environment, "name"):
        return False
    return (optional_str(environment, "action") or "start") in DEPLOYING_ACTIONS


# Which environment of a pipeline to report first: one whose job moved beats one still waiting.
_RANK = {states.IN_PROGRESS: 0, states.FAILED: 1, states.SUCCEEDED: 1, states.PENDING: 2}


def _pipeline(body: Any) -> Parsed:
    attributes = require_mapping(body, "object_attributes")
    builds = get_path(body, "builds")
    if builds is not None and not isinstance(builds, list):
        raise PayloadError("builds", "must be a list")
    repo = require_str(body, "project.path_with_namespace")
    sha = require_sha(body, "object_attributes.sha")
    pipeline_id = require_str(body, "object_attributes.id")
    url = optional_str(attributes, "url") or _pipeline_url(body, pipeline_id)
    ref = optional_str(attributes, "ref")

    latest: dict[str, tuple[int, str, Any]] = {}  # environment -> (job id, status, job)
    for index, build in enumerate(builds or []):
        if not isinstance(build, dict) or not _deploys(build.get("environment")):
            continue
        try:
            job_id = _require_int(build, "id")
            job_status = require_str(build, "status")
        except PayloadError as exc:
            raise PayloadError(f"builds[{index}].{exc.field}", exc.problem) from None
        name = str(build["environment"]["name"])
        if name not in latest or job_id > latest[name][0]:
            latest[name] = (job_id, job_status, build)
    if not latest:
        return Parsed(None, "pipeline has no job that deploys to an environment")

    found: list[tuple[int, int, DeployEvent]] = []
    untracked: list[str] = []
    for name, (job_id, gitlab_status, build) in sorted(latest.items()):
        ours = JOB_STATUS.get(gitlab_status)
        if ours is None:
            untracked.append(f"{name} ({gitlab_status})")
            continue
        event = DeployEvent(
            target=DeployTarget(provider="gitlab", repo=repo, environment=name),
            sha=sha,
            status=ours,
            source_event="gitlab.pipeline",
            external_id=f"job:{job_id}",
            ref=ref,
            version=ref if attributes.get("tag") is True else None,
            url=url,
            actor=optional_str(body, "user.username"),
            description=optional_str(build, "name"),
            occurred_at=_when(optional_str(build, "finished_at"))
            or _when(optional_str(build, "started_at"))
            or _when(optional_str(attributes, "finished_at"))
            or _when(optional_str(attributes, "created_at")),
        )
        found.append((_RANK[ours], -job_id, event))
    if not found:
        return Parsed(None, f"no deploy job to track: {', '.join(untracked)}")
    events = tuple(event for _, _, event in sorted(found, key=lambda item: item[:2]))
    return Parsed(events[0], events=events)


def _pipeline_url(body: Any, pipeline_id: str) -> str | None:
    web_url = optional_str(body, "project.web_url")
    return f"{web_url.rstrip('/')}/-/pipelines/{pipeline_id}" if web_url else None


def _job_repo(body: Any) -> str:
    """The project path: `project.path_with_namespace` (current GitLab), else the path of
    `repository.homepage`, else `project_name` (older payloads; may be a display name)."""
    path = optional_str(body, "project.path_with_namespace")
    if path:
        return path
    homepage = optional_str(body, "repository.homepage")
    if homepage:
        from_url = urlsplit(homepage).path.strip("/")
        if from_url:
            return from_url
    name = optional_str(body, "project_name")
    if name and " " not in name:
        return name
    raise PayloadError("project.path_with_namespace")


def _job(body: Any) -> Parsed:
    environment = get_path(body, "environment")
    if environment is None:
        return Parsed(None, "job deploys to no environment")
    if not isinstance(environment, dict):
        raise PayloadError("environment", "must be a JSON object")
    name = require_str(body, "environment.name")
    if not _deploys(environment):
        action = optional_str(environment, "action")
        return Parsed(None, f"job environment action {action!r} deploys nothing")
    gitlab_status, status = _status(JOB_STATUS, body, "build_status")
    if status is None:
        return Parsed(None, f"job status {gitlab_status!r} is not tracked")
    build_id = require_str(body, "build_id")
    homepage = optional_str(body, "project.web_url") or optional_str(body, "repository.homepage")
    ref = optional_str(body, "ref")
    repo = _job_repo(body)
    event = DeployEvent(
        target=DeployTarget(provider="gitlab", repo=repo, environment=name),
        sha=require_sha(body, "sha", "checkout_sha"),
        status=status,
        source_event="gitlab.job",
        external_id=f"job:{build_id}",
        ref=ref,
        version=ref if body.get("tag") is True else None,
        url=optional_str(body, "build_url")
        or (f"{homepage.rstrip('/')}/-/jobs/{build_id}" if homepage else None),
        actor=optional_str(body, "user.username"),
        description=optional_str(body, "build_name"),
        occurred_at=_when(optional_str(body, "build_finished_at"))
        or _when(optional_str(body, "build_started_at"))
        or _when(optional_str(body, "build_created_at")),
    )
    if gitlab_status != MANUAL:
        return Parsed(event)
    project = optional_str(body, "project.id") or optional_str(body, "project_id") or repo
    waiting = replace(event, gate=approval_gate(project, name))
    return Parsed(event, waiting=WaitingJob(project=project, environment=name, event=waiting))


def _deployment(body: Any) -> Parsed:
    gitlab_status, status = _status(DEPLOYMENT_STATUS, body, "status")
    if status is None:
        return Parsed(None, f"deployment status {gitlab_status!r} is not tracked")
    short_sha = require_str(body, "short_sha").lower()
    if not SHORT_SHA_RE.match(short_sha):
        raise PayloadError("short_sha", "must be a commit sha prefix (hex)")
    ref = GitLabDeploymentRef(
        project_id=_require_int(body, "project.id"),
        project_path=require_str(body, "project.path_with_namespace"),
        deployment_id=_require_int(body, "deployment_id"),
        status=status,
        environment=require_str(body, "environment"),
        short_sha=short_sha,
        url=optional_str(body, "deployable_url"),
        actor=optional_str(body, "user.username"),
        commit_url=optional_str(body, "commit_url"),
        commit_title=optional_str(body, "commit_title"),
        occurred_at=_when(optional_str(body, "status_changed_at")),
        blocked=gitlab_status == BLOCKED,
    )
    return Parsed(None, "deployment hook: full sha to be looked up", lookup=ref)
