"""GitLab deployers: approve a protected-environment deployment, or start a pipeline by trigger.

    approval = GitLabApprovalDeployer(make_client(gitlab_api_url), token)    # GITLAB_TOKEN
    trigger = GitLabTriggerDeployer(make_client(gitlab_api_url), secret_lookup)

**`gitlab_deployment_approval`** (Premium): for approve/reject,

    POST /projects/:id/deployments/:deployment_id/approval
    {"status": "approved" | "rejected", "comment": "Approved in Slack by <actor>: <reason>"}

with the project and deployment from `request.context["gitlab_project"]` (id or full path)
and `["gitlab_deployment_id"]` (the Deployment Hook's `deployment_id`), plus
`["gitlab_represented_as"]` when a rule or group must be named. GitLab answers 201. The
token's user is the approver: it must be allowed to approve (and may be barred from approving
a deployment it triggered). Approving again while the deployment still waits just updates the
approval, so the call is retried like any other. Once enough approvals unblocked it, GitLab
answers 400 "This deployment is not waiting for approvals."; that counts as done only when
the deployment's `approvals` hold this very decision (same status and comment, i.e. an
earlier attempt got through); otherwise it is a non-retryable failure with GitLab's words.

**`gitlab_trigger`** `{project, ref, token_env}`: for promote/rollback/approve,

    POST /projects/:id/trigger/pipeline
    {"token": <trigger token>, "ref": ref,
     "variables": {"REQUEST_ID", "SHA", "VERSION", "ACTION", "ENVIRONMENT"}}

GitLab reads this JSON body exactly like the form fields `token`, `ref` and
`variables[KEY]=value` (the API documents both), and answers 201 with the pipeline, whose
`web_url` the result carries. The trigger token is read through the `SecretLookup` from the
environment variable `token_env` names, at each call. A trigger is not idempotent: it is sent
once, and a lost answer is a retryable failure (the trigger token cannot list pipelines to
check), so the pipeline should refuse a `REQUEST_ID` it has already deployed. A reject
starts nothing.

Errors come as `{"message": ...}` (a string, or a mapping of field errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    SecretSource,
    decision_comment,
    explained,
    json_object,
    lookup_from,
    opt_str,
    refused,
    require_action,
    require_context,
    require_target,
    secret_value,
    short_sha,
)
from integrations.errors import CredentialsError
from integrations.gitlab.client import project_path
from integrations.http import RetryPolicy

__all__ = ["GitLabApprovalDeployer", "GitLabTriggerDeployer"]

WEBHOOK = "the GitLab Deployment Hook"
NOT_WAITING = "not waiting for approvals"


class GitLabApprovalDeployer:
    """`Deployer` that approves or rejects a GitLab deployment waiting for approval.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the API root
      (`https://gitlab.com/api/v4`).
    * **token** - a personal, project or group access token (`api` scope) of an approver.
    * **retry** - how calls retry.
    """

    def __init__(
        self, client: httpx.AsyncClient, token: str, *, retry: RetryPolicy | None = None
    ) -> None:
        if not token.strip():
            raise CredentialsError("GitLabApprovalDeployer needs a token")
        self._client = client
        self._token = token.strip()
        self._retry = retry or RetryPolicy()

    async def execute(self, request: DeployRequest) -> DeployResult:
        require_action(request, ("approve", "reject"))
        project = require_context(request, "gitlab_project", WEBHOOK)
        deployment_id = _deployment_id(require_context(request, "gitlab_deployment_id", WEBHOOK))
        project_id = project_path(project if isinstance(project, int) else str(project))
        status = "approved" if request.action == "approve" else "rejected"
        comment = decision_comment(request)
        body: dict[str, Any] = {"status": status, "comment": comment}
        represented_as = opt_str(request.context.get("gitlab_represented_as"))
        if represented_as:
            body["represented_as"] = represented_as
        deployment_path = f"/projects/{project_id}/deployments/{deployment_id}"
        done = DeployResult(detail=f"{status} GitLab deployment {deployment_id} of {project}")
        try:
            await self._retry.request(
                self._client,
                "POST",
                f"{deployment_path}/approval",
                headers={"PRIVATE-TOKEN": self._token},
                json=body,
                secrets=[self._token],
            )
        except DeliveryFailed as failure:
            if failure.status == 400 and NOT_WAITING in failure.reason.lower():
                if await self._already_recorded(deployment_path, status, comment):
                    return DeployResult(
                        detail=f"{done.detail} (GitLab had already recorded this decision)"
                    )
            raise explained(
                failure,
                {
                    400: "GitLab refused the decision",
                    401: "GitLab refused the token; check GITLAB_TOKEN",
                    403: "the token's user may not approve deployments of this environment",
                    404: "project or deployment not found, or the token cannot see it",
                },
            ) from failure
        return done

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _already_recorded(self, deployment_path: str, status: str, comment: str) -> bool:
        """Whether the deployment's approvals hold this decision (an earlier attempt's)."""
        try:
            response = await self._retry.request(
                self._client,
                "GET",
                deployment_path,
                headers={"PRIVATE-TOKEN": self._token},
                secrets=[self._token],
            )
            approvals = json_object(response, f"GET {deployment_path}").get("approvals")
        except DeliveryFailed:
            return False
        if not isinstance(approvals, list):
            return False
        return any(
            isinstance(item, Mapping)
            and item.get("status") == status
            and item.get("comment") == comment
            for item in approvals
        )

    def __repr__(self) -> str:
        return f"GitLabApprovalDeployer(base_url={str(self._client.base_url)!r})"


class GitLabTriggerDeployer:
    """`Deployer` that starts a GitLab pipeline with a pipeline trigger token.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the API root.
    * **secrets** - `name -> value` (or a mapping) for the environment variable `token_env`
      names; a missing one is a non-retryable failure naming the variable.
    * **retry** - how calls retry (the trigger itself is always sent once).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        secrets: SecretSource,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._secrets = lookup_from(secrets)
        self._retry = retry or RetryPolicy()

    async def execute(self, request: DeployRequest) -> DeployResult:
        if request.action == "reject":
            return DeployResult(detail="rejected: no pipeline was triggered")
        require_action(request, ("promote", "rollback", "approve"))
        project = require_target(request, "project")
        ref = require_target(request, "ref")
        token_env = require_target(request, "token_env")
        token = secret_value(self._secrets, token_env, "the GitLab pipeline trigger token")
        variables = {
            "REQUEST_ID": request.request_id,
            "SHA": request.sha,
            "VERSION": request.version or "",
            "ACTION": request.action,
            "ENVIRONMENT": request.environment,
        }
        path = f"/projects/{project_path(project)}/trigger/pipeline"
        try:
            response = await self._retry.request(
                self._client,
                "POST",
                path,
                json={"token": token, "ref": ref, "variables": variables},
                secrets=[token],
                attempts=1,
            )
        except DeliveryFailed as failure:
            raise explained(
                failure,
                {
                    400: f"GitLab could not create the pipeline (does ref {ref!r} exist?)",
                    401: f"GitLab refused the trigger token; check {token_env}",
                    403: f"GitLab refused the trigger token; check {token_env}",
                    404: f"project {project} not found, or the trigger token in {token_env} "
                    "is not one of its tokens",
                },
            ) from failure
        try:
            pipeline = json_object(response, f"POST {path}")
        except DeliveryFailed:
            pipeline = {}  # the pipeline exists all the same
        number = pipeline.get("id")
        which = f"pipeline {number}" if isinstance(number, int) else "a pipeline"
        return DeployResult(
            detail=(
                f"triggered {which} of {project} on {ref} to {request.action} "
                f"{request.service} in {request.environment} at {short_sha(request.sha)}"
            ),
            url=opt_str(pipeline.get("web_url")),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"GitLabTriggerDeployer(base_url={str(self._client.base_url)!r})"


def _deployment_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise refused(f"{value!r} is not a GitLab deployment id")
