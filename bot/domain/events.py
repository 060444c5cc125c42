"""What the core learns from the outside, as plain frozen values (no provider payload shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DeployTarget:
    """How a CI event names what it deploys; the config turns it into service + environment."""

    provider: str  # "github", "gitlab", "argocd", "jenkins", "generic"
    repo: str | None = None  # "owner/name" on the code host
    environment: str | None = None  # the CI system's own environment name
    workflow: str | None = None  # GitHub workflow file name, e.g. "deploy-staging.yml"
    app: str | None = None  # Argo CD application
    job: str | None = None  # Jenkins job
    service: str | None = None  # generic webhooks name the service directly


@dataclass(frozen=True)
class GateRequest:
    """A pipeline that waits for a decision in Slack, and how to tell it the decision.

    `decide_via` names the deployer that carries the decision back (for example
    "github_protection_rule"), or is None when the pipeline polls for it (the gates API);
    `context` holds what that deployer needs (callback URL, installation id, ...).
    """

    decide_via: str | None
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployEvent:
    """One CI report about one deployment: which version, where, and how far it got.

    `status` is the deployment state the CI system reports (pending, in_progress,
    succeeded, failed).
    """

    target: DeployTarget
    sha: str
    status: str
    source_event: str  # e.g. "github.deployment_status"
    external_id: str | None = None  # e.g. GitHub deployment id, GitLab deployment id
    ref: str | None = None
    version: str | None = None
    url: str | None = None  # CI run or logs
    actor: str | None = None  # who deployed, as the CI system names them
    description: str | None = None
    occurred_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    gate: GateRequest | None = None  # the pipeline waits for an approval
    decided_by: str | None = None  # who approved or rejected it on the CI system itself


_EVENT_FIELDS = fields(DeployEvent)
_TARGET_FIELDS = fields(DeployTarget)


def event_to_dict(event: DeployEvent) -> dict[str, Any]:
    """A JSON-ready form, for events that wait in the outbox."""
    # Field by field rather than `asdict`, which deep-copies every value: this runs for
    # every delivery a request stores.
    data = {f.name: getattr(event, f.name) for f in _EVENT_FIELDS}
    data["target"] = {f.name: getattr(event.target, f.name) for f in _TARGET_FIELDS}
    data["extra"] = dict(event.extra)
    if event.gate is not None:
        data["gate"] = {"decide_via": event.gate.decide_via, "context": dict(event.gate.context)}
    data["occurred_at"] = event.occurred_at.isoformat() if event.occurred_at else None
    return data


def event_from_dict(data: dict[str, Any]) -> DeployEvent:
    values = dict(data)
    values["target"] = DeployTarget(**values["target"])
    if values.get("gate") is not None:
        values["gate"] = GateRequest(**values["gate"])
    if values.get("occurred_at"):
        values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
    return DeployEvent(**values)
