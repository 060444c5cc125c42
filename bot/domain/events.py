"""What the core learns from the outside, as plain frozen values (no provider payload shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
