"""The `deploy:` section of an environment: how the bot starts a deploy (promote, rollback)."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from bot.config.base import ConfigModel, invalid, quoted_list
from bot.config.types import EnvVarName, Text, Url


class GithubWorkflowDeploy(ConfigModel):
    """Run a GitHub Actions workflow (workflow_dispatch)."""

    workflow: Text
    ref: Text = "main"
    inputs: dict[str, str] = {}


class GitlabDeploymentApproval(ConfigModel):
    """Approve the waiting GitLab protected-environment deployment, then run its job.

    `run_job` (default true): once GitLab no longer waits for approvals, play the
    deployment's job left in `manual`; false only approves, and someone starts the job in
    GitLab.
    """

    run_job: bool = True


class GitlabTrigger(ConfigModel):
    """Start a GitLab pipeline with a trigger token."""

    project: Text
    ref: Text
    token_env: EnvVarName


class ArgoCDDeploy(ConfigModel):
    """Sync an Argo CD application."""

    app: Text


class JenkinsDeploy(ConfigModel):
    """Build a Jenkins job."""

    job: Text
    token_env: EnvVarName | None = None
    user_env: EnvVarName | None = None


class WebhookDeploy(ConfigModel):
    """POST a signed JSON body to a URL of yours."""

    url: Url
    secret_env: EnvVarName


DeployTarget = (
    GithubWorkflowDeploy
    | GitlabDeploymentApproval
    | GitlabTrigger
    | ArgoCDDeploy
    | JenkinsDeploy
    | WebhookDeploy
)
_DEPLOY_KINDS = (
    "github_workflow",
    "gitlab_deployment_approval",
    "gitlab_trigger",
    "argocd",
    "jenkins",
    "webhook",
)


class Deploy(ConfigModel):
    """How the bot starts a deploy (promote, rollback): exactly one kind."""

    github_workflow: GithubWorkflowDeploy | None = None
    gitlab_deployment_approval: GitlabDeploymentApproval | None = None
    gitlab_trigger: GitlabTrigger | None = None
    argocd: ArgoCDDeploy | None = None
    jenkins: JenkinsDeploy | None = None
    webhook: WebhookDeploy | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_empty_mapping(cls, data: object) -> object:
        # `gitlab_deployment_approval:` with nothing after it reads as null in YAML.
        if isinstance(data, dict) and data.get("gitlab_deployment_approval", {}) is None:
            return {**data, "gitlab_deployment_approval": {}}
        return data

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        chosen = [kind for kind in _DEPLOY_KINDS if getattr(self, kind) is not None]
        if len(chosen) != 1:
            found = f" (found {quoted_list(chosen)})" if chosen else ""
            raise invalid(f"set exactly one of {', '.join(_DEPLOY_KINDS)}{found}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in _DEPLOY_KINDS if getattr(self, kind) is not None)

    @property
    def target(self) -> DeployTarget:
        target: DeployTarget = getattr(self, self.kind)
        return target
