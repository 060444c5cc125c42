"""GitLab deployers: approve a protected-environment deployment, or start a pipeline by trigger.

    approval = GitLabApprovalDeployer(make_client(gitlab_api_url), token)    # GITLAB_TOKEN
    trigger = GitLabTriggerDeployer(make_client(gitlab_api_url), secret_lookup)

**`gitlab_deployment_approval`** (Premium): for approve/reject,

    POST /projects/:id/deployments/:deployment_id/approval
    {"status": "approved" | "rejected", "comment": "Approved in Slack by <actor>: <reason>"}

with the project and deployment from `request.context["gitlab_project"]` (id or full path)
and `["gitlab_deployment_id"]` (the gate of a deployment waiting for approval carries both),
plus `["gitlab_represented_as"]` when a rule or group must be named. GitLab answers 201 with
`{user, status, created_at, comment}`, which the result repeats. The token's user is the
approver: it must be allowed to approve (and may be barred from approving a deployment it
triggered).

An approval does not start the deployment: GitLab leaves its job in `manual`. So after an
approval GitLab accepted (or found already recorded, below), unless the environment says
`deploy.gitlab_deployment_approval.run_job: false`, the deployment is read
(`GET /projects/:id/deployments/:deployment_id`) and, once GitLab no longer waits for
approvals, its job is played (`POST /projects/:id/jobs/:job_id/play`) when it is `manual`:
once, and never when it already started (that counts as done) or ended (`failed`,
`canceled`: a non-retryable failure). While a GitLab rule still wants more approvers nothing
is played and the result says "GitLab waits for N more approvals". The result then carries
the job's page (`.../-/jobs/<id>`), so the delivery receipt names the job. The token's user
must be allowed to run it: the Developer role or more, and deploy access to the protected
environment. `integrations/deployers/gitlab_jobs.py` holds the details. A reject runs
nothing.

For promote (a promotion's gate was approved in Slack, or the environment has no gate), and
for an approve that names no deployment or a promotion's reject (its gate rejected in Slack,
or expired: `on_approve` in the context), the deployment is the newest one of the
environment at the request's sha that waits for approval:

    GET /projects/:id/deployments?environment=<name>&status=blocked&order_by=id&sort=desc

with the project from the context, else the service's repository, and the environment from
the context (`gitlab_environment`), else the target (the tracked GitLab environment), else
releasebot's name for it. Promoting lets GitLab's deployment of that commit go ahead; when
none waits (its pipeline has not reached the deploy job), nothing is approved and the
failure says so; a reject with none waiting sends nothing and says "nothing was waiting in
GitLab" (the promotion it refused never starts either way). Approving again while the
deployment still waits just updates the approval, so the call is retried like any other.
Once enough approvals unblocked it, GitLab answers 400 "This deployment is not waiting for
approvals."; that counts as done only when the deployment's `approvals` hold this very
decision (same status and comment, i.e. an earlier attempt got through), and the job is then
handled from that same read of the deployment, so a retry after a lost answer never plays it
twice; otherwise it is a non-retryable failure with GitLab's words.

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
from dataclasses import replace
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
from integrations.deployers.gitlab_jobs import GitLabJobRunner, runs_job
from integrations.errors import CredentialsError
from integrations.gitlab.client import pick_waiting, project_path, waiting_query
from integrations.gitlab.payloads import CONTEXT_DEPLOYMENT, CONTEXT_ENVIRONMENT, CONTEXT_PROJECT
from integrations.http import RetryPolicy

__all__ = ["GitLabApprovalDeployer", "GitLabTriggerDeployer"]

WEBHOOK = "the GitLab Deployment Hook"
NOT_WAITING = "not waiting for approvals"
NOTHING_WAITING = "nothing was waiting in GitLab"


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
        self._jobs = GitLabJobRunner(client, self._token, self._retry)

    async def execute(self, request: DeployRequest) -> DeployResult:
        require_action(request, ("approve", "reject", "promote"))
        named = request.context.get(CONTEXT_DEPLOYMENT) is not None
        promotion = bool(request.context.get("on_approve"))
        if request.action == "promote" or (
            not named and (request.action == "approve" or promotion)
        ):
            return await self._decide_waiting(request)
        project = require_context(request, CONTEXT_PROJECT, WEBHOOK)
        deployment_id = _deployment_id(require_context(request, CONTEXT_DEPLOYMENT, WEBHOOK))
        return await self._decide(request, project, deployment_id)

    async def _decide_waiting(self, request: DeployRequest) -> DeployResult:
        """Approve (promote) or reject the newest deployment of the environment at the
        request's sha that waits; a reject with none waiting sends nothing, and says so."""
        project = opt_str(str(request.context.get(CONTEXT_PROJECT) or "")) or request.repo
        environment = (
            opt_str(request.context.get(CONTEXT_ENVIRONMENT))
            or opt_str(request.target.get("environment"))
            or request.environment
        )
        if not project:
            raise refused(f"{request.kind}: no GitLab project for {request.service}")
        path, params = waiting_query(project, environment)
        response = await self._retry.request(
            self._client,
            "GET",
            path,
            params=params,
            headers={"PRIVATE-TOKEN": self._token},
            secrets=[self._token],
        )
        items = response_list(response, f"GET {path}")
        waiting = pick_waiting(items, request.sha)
        what = f"deployment of {short_sha(request.sha)} to {environment} in {project}"
        if waiting is None and request.action == "reject":
            return DeployResult(
                detail=f"{NOTHING_WAITING}: no {what} waits for approval, so no rejection was sent"
            )
        if waiting is None:
            raise refused(
                f"no GitLab {what} waits for approval: run its pipeline up to the deploy job first"
            )
        action = "reject" if request.action == "reject" else "approve"
        return await self._decide(replace(request, action=action), project, waiting.id)

    async def _decide(
        self, request: DeployRequest, project: Any, deployment_id: int
    ) -> DeployResult:
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
            response = await self._retry.request(
                self._client,
                "POST",
                f"{deployment_path}/approval",
                headers={"PRIVATE-TOKEN": self._token},
                json=body,
                secrets=[self._token],
            )
        except DeliveryFailed as failure:
            if failure.status == 400 and NOT_WAITING in failure.reason.lower():
                recorded = await self._already_recorded(deployment_path, status, comment)
                if recorded is not None:
                    done = replace(
                        done, detail=f"{done.detail} (GitLab had already recorded this decision)"
                    )
                    return await self._run_job(request, done, project_id, deployment_id, recorded)
            raise explained(
                failure,
                {
                    400: "GitLab refused the decision",
                    401: "GitLab refused the token; check GITLAB_TOKEN",
                    403: "the token's user may not approve deployments of this environment",
                    404: "project or deployment not found, or the token cannot see it",
                },
            ) from failure
        done = replace(done, detail=f"{done.detail}: {_answer(response, status)}")
        return await self._run_job(request, done, project_id, deployment_id)

    async def _run_job(
        self,
        request: DeployRequest,
        done: DeployResult,
        project_id: str,
        deployment_id: int,
        deployment: Mapping[str, Any] | None = None,
    ) -> DeployResult:
        """`done`, after playing the approved deployment's job when the environment runs it
        (`run_job`, default true); a reject runs nothing."""
        if request.action != "approve" or not runs_job(request):
            return done
        try:
            outcome = await self._jobs.after_approval(project_id, deployment_id, deployment)
        except DeliveryFailed as failure:
            raise DeliveryFailed(
                f"GitLab recorded the approval of deployment {deployment_id}, "
                f"but its job did not run: {failure.reason}",
                retryable=failure.retryable,
                retry_after=failure.retry_after,
                status=failure.status,
            ) from failure
        return DeployResult(detail=f"{done.detail}; {outcome.detail}", url=outcome.url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _already_recorded(
        self, deployment_path: str, status: str, comment: str
    ) -> Mapping[str, Any] | None:
        """The deployment, when its approvals hold this decision (an earlier attempt's)."""
        try:
            response = await self._retry.request(
                self._client,
                "GET",
                deployment_path,
                headers={"PRIVATE-TOKEN": self._token},
                secrets=[self._token],
            )
            deployment = json_object(response, f"GET {deployment_path}")
        except DeliveryFailed:
            return None
        approvals = deployment.get("approvals")
        if not isinstance(approvals, list):
            return None
        recorded = any(
            isinstance(item, Mapping)
            and item.get("status") == status
            and item.get("comment") == comment
            for item in approvals
        )
        return deployment if recorded else None

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


def _answer(response: httpx.Response, asked: str) -> str:
    """GitLab's 201 `{user, status, created_at, comment}` in words: who GitLab recorded as
    deciding, and what."""
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if not isinstance(data, Mapping):
        return f"GitLab recorded it as {asked}"
    user = data.get("user")
    who = opt_str(user.get("username")) if isinstance(user, Mapping) else None
    status = opt_str(data.get("status")) or asked
    return f"GitLab recorded it as {status}" + (f" by {who}" if who else "")


def response_list(response: httpx.Response, what: str) -> list[Any]:
    """The reply as a JSON list; a garbled reply is worth another try, a wrong shape is not."""
    try:
        data: Any = response.json()
    except ValueError:
        raise DeliveryFailed(
            f"{what}: the reply is not JSON", retryable=True, status=response.status_code
        ) from None
    if not isinstance(data, list):
        raise refused(f"{what}: the reply is not a JSON list", status=response.status_code)
    return data


def _deployment_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise refused(f"{value!r} is not a GitLab deployment id")
