"""Deploy by running a GitHub Actions workflow (`workflow_dispatch`): kind `github_workflow`.

    deployer = GitHubWorkflowDeployer(make_client(api_url, headers=GITHUB_HEADERS), token)
    # or GitHubWorkflowDeployer(client, GitHubAppAuth(app_id, key))
    result = await deployer.execute(request)   # promote, rollback, approve; reject is a no-op

`POST /repos/{repo}/actions/workflows/{workflow}/dispatches` with
`{"ref": target.ref, "inputs": {...target.inputs, "request_id", "sha", "version", "action",
"environment"}, "return_run_details": true}`. GitHub accepts at most 10 inputs, so a target
may add at most five of its own (an input it names the same as one of ours is replaced).
GitHub answers 204, or 200 `{workflow_run_id, run_url, html_url}` when it supports
`return_run_details` (then the result carries the run's page); pass
`return_run_details=False` for a GitHub Enterprise Server that refuses the key.

A deploy from chat (`/release deploy checkout v1.4.2 to production`) dispatches on the
branch or tag it named instead of `target.ref`, so the workflow runs as of that ref; one
that named a commit sha dispatches on `target.ref` (GitHub dispatches only on a branch or
tag) with the sha in the `sha` input.

**A dispatch is not idempotent.** It is sent once; when the answer is lost (timeout,
connection error, 5xx) the deployer waits `lookup_delay` seconds, then looks for the run
this request started,

    GET /repos/{repo}/actions/workflows/{workflow}/runs?event=workflow_dispatch&per_page=30

matching a run whose `display_title` or `name` contains the request id, and returns that
run instead of dispatching twice. Only when no such run shows up does it dispatch once more.
Request ids whose dispatch stayed uncertain are remembered (in this process), so a later
`execute` of the same request looks before it dispatches.

For this to work **the workflow must put the request id in its run name**:

    on:
      workflow_dispatch:
        inputs:
          request_id: { required: true }
          sha: { required: true }
          version: { required: false }
          action: { required: true }
          environment: { required: true }
    run-name: "Deploy ${{ inputs.sha }} (${{ inputs.request_id }})"   # or just the id

Without it the lookup finds nothing and a lost answer can start the workflow twice (the
`request_id` input lets the workflow itself refuse a duplicate).

Authentication is a token (`GITHUB_TOKEN`: a PAT or fine-grained token with Actions
read/write) or a GitHub App (installation token; the App needs Actions read and write). The
installation is `request.context["installation_id"]` when a webhook supplied it, else
looked up for the repository. A 401 on a cached installation token fetches a fresh one once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    deploy_ref,
    explained,
    is_ambiguous,
    json_object,
    opt_str,
    refused,
    require_action,
    require_target,
    short_sha,
)
from integrations.errors import CredentialsError
from integrations.github.client import GITHUB_HEADERS, GitHubAppAuth
from integrations.http import RetryPolicy, Sleep

__all__ = ["MAX_INPUTS", "RUNS_PER_PAGE", "GitHubAuth", "GitHubWorkflowDeployer"]

MAX_INPUTS = 10
"""The most inputs GitHub accepts in one workflow_dispatch."""
RUNS_PER_PAGE = 30
"""Recent runs searched for one a lost dispatch may have started."""

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubAuth:
    """Sends GitHub REST calls with a token or an App installation token.

    An installation token GitHub refuses (401: revoked early, permissions changed) is dropped
    and the call sent once more with a fresh one: a 401 means nothing was done.
    """

    def __init__(
        self, client: httpx.AsyncClient, auth: str | GitHubAppAuth, retry: RetryPolicy
    ) -> None:
        if isinstance(auth, str) and not auth.strip():
            raise CredentialsError("the GitHub token is empty")
        self.client = client
        self.auth = auth
        self.retry = retry

    async def installation(self, request: DeployRequest) -> int | None:
        """The App installation to act as (None with a plain token)."""
        if not isinstance(self.auth, GitHubAppAuth):
            return None
        given = request.context.get("installation_id")
        if given is not None:
            return installation_id(given)
        return await self.auth.installation_for_repo(self.client, request.repo)

    async def request(
        self,
        method: str,
        path: str,
        *,
        installation: int | None,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        token = await self._token(installation)
        try:
            return await self._send(method, path, token, json, params, attempts)
        except DeliveryFailed as failure:
            if failure.status != 401 or not isinstance(self.auth, GitHubAppAuth):
                raise
            assert installation is not None
            self.auth.forget_token(installation)
            token = await self._token(installation)
            return await self._send(method, path, token, json, params, attempts)

    async def _token(self, installation: int | None) -> str:
        if isinstance(self.auth, GitHubAppAuth):
            assert installation is not None
            return await self.auth.installation_token(self.client, installation)
        return self.auth.strip()

    async def _send(
        self,
        method: str,
        path: str,
        token: str,
        json: Any,
        params: Mapping[str, str | int] | None,
        attempts: int | None,
    ) -> httpx.Response:
        return await self.retry.request(
            self.client,
            method,
            path,
            params=params,
            headers={**GITHUB_HEADERS, "Authorization": f"Bearer {token}"},
            json=json,
            secrets=[token],
            attempts=attempts,
        )

    def who(self) -> str:
        return "the GitHub App" if isinstance(self.auth, GitHubAppAuth) else "GITHUB_TOKEN"


def installation_id(value: Any) -> int:
    """An installation id from a webhook's context (an int, or digits)."""
    if isinstance(value, bool):
        raise refused(f"{value!r} is not a GitHub App installation id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise refused(f"{value!r} is not a GitHub App installation id")


class GitHubWorkflowDeployer:
    """`Deployer` that dispatches a workflow, at most once per request id (see the module doc).

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the GitHub API root.
    * **auth** - a bearer token, or a `GitHubAppAuth`.
    * **retry** - how calls retry (the dispatch itself is always sent once).
    * **sleep**, **lookup_delay** - the wait before looking for the run a lost dispatch
      may have started (GitHub lists a new run a moment after accepting the dispatch).
    * **return_run_details** - ask GitHub for the run's id and page (200 instead of 204).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        auth: str | GitHubAppAuth,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        lookup_delay: float = 3.0,
        return_run_details: bool = True,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._github = GitHubAuth(client, auth, self._retry)
        self._client = client
        self._sleep = sleep
        self._lookup_delay = lookup_delay
        self._return_run_details = return_run_details
        self._uncertain: set[str] = set()

    async def execute(self, request: DeployRequest) -> DeployResult:
        if request.action == "reject":
            return DeployResult(detail="rejected: no workflow was dispatched")
        require_action(request, ("promote", "rollback", "approve"))
        repo = _check_repo(request.repo)
        workflow = require_target(request, "workflow")
        ref = deploy_ref(request) or _opt_target(request, "ref") or "main"
        body: dict[str, Any] = {"ref": ref, "inputs": _inputs(request)}
        if self._return_run_details:
            body["return_run_details"] = True
        workflow_path = f"/repos/{repo}/actions/workflows/{quote(workflow, safe='')}"
        installation = await self._github.installation(request)

        if request.request_id in self._uncertain:
            found = await self._find_run(request, workflow, workflow_path, installation)
            if found is not None:
                self._uncertain.discard(request.request_id)
                return found
        try:
            result = await self._dispatch(request, workflow, ref, workflow_path, body, installation)
        except DeliveryFailed as failure:
            if not is_ambiguous(failure):
                raise self._explained(failure, workflow, ref) from failure
            self._uncertain.add(request.request_id)
        else:
            self._uncertain.discard(request.request_id)
            return result

        # The answer was lost: the run may exist. Look before dispatching again.
        await self._sleep(self._lookup_delay)
        found = await self._find_run(request, workflow, workflow_path, installation)
        if found is not None:
            self._uncertain.discard(request.request_id)
            return found
        try:
            result = await self._dispatch(request, workflow, ref, workflow_path, body, installation)
        except DeliveryFailed as failure:
            raise self._explained(failure, workflow, ref) from failure
        self._uncertain.discard(request.request_id)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _dispatch(
        self,
        request: DeployRequest,
        workflow: str,
        ref: str,
        workflow_path: str,
        body: dict[str, Any],
        installation: int | None,
    ) -> DeployResult:
        response = await self._github.request(
            "POST", f"{workflow_path}/dispatches", installation=installation, json=body, attempts=1
        )
        detail = (
            f"dispatched {workflow} on {ref} to {request.action} {request.service} "
            f"in {request.environment} at {short_sha(request.sha)}"
        )
        url: str | None = None
        if response.status_code == 200 and response.content:
            try:
                data = json_object(response, f"POST {workflow_path}/dispatches")
            except DeliveryFailed:
                data = {}  # dispatched all the same; the run's details are a bonus
            url = opt_str(data.get("html_url"))
            run_id = data.get("workflow_run_id")
            if isinstance(run_id, int) and not isinstance(run_id, bool):
                detail += f" (run {run_id})"
        return DeployResult(detail=detail, url=url)

    async def _find_run(
        self,
        request: DeployRequest,
        workflow: str,
        workflow_path: str,
        installation: int | None,
    ) -> DeployResult | None:
        path = f"{workflow_path}/runs"
        try:
            response = await self._github.request(
                "GET",
                path,
                installation=installation,
                params={"event": "workflow_dispatch", "per_page": RUNS_PER_PAGE},
            )
        except DeliveryFailed as failure:
            # Dispatching blind could start the workflow twice: try again later instead.
            raise DeliveryFailed(
                f"the dispatch of {workflow} may have started a run, and looking for it "
                f"failed: {failure.reason}",
                retryable=True,
                retry_after=failure.retry_after,
                status=failure.status,
            ) from failure
        runs = json_object(response, f"GET {path}").get("workflow_runs")
        if not isinstance(runs, list):
            raise refused(f"GET {path}: the reply has no workflow_runs list")
        for run in runs:
            if not isinstance(run, Mapping):
                continue
            titles = (opt_str(run.get("display_title")), opt_str(run.get("name")))
            if any(title and request.request_id in title for title in titles):
                number = run.get("run_number")
                which = f"run #{number}" if isinstance(number, int) else "a run"
                return DeployResult(
                    detail=(
                        f"{workflow} {which} was already started for this request "
                        f"({request.action} {request.service} in {request.environment} at "
                        f"{short_sha(request.sha)}); not dispatched again"
                    ),
                    url=opt_str(run.get("html_url")),
                )
        return None

    def _explained(self, failure: DeliveryFailed, workflow: str, ref: str) -> DeliveryFailed:
        return explained(
            failure,
            {
                401: f"GitHub refused the credentials; check {self._github.who()}",
                403: f"{self._github.who()} may not run workflows; it needs Actions write",
                404: (
                    f"workflow {workflow} not found, or {self._github.who()} cannot see it "
                    "(it needs `on: workflow_dispatch` on the default branch)"
                ),
                422: f"GitHub refused the dispatch: check ref {ref!r} and the workflow's inputs",
            },
        )

    def __repr__(self) -> str:
        return f"GitHubWorkflowDeployer(base_url={str(self._client.base_url)!r})"


def _inputs(request: DeployRequest) -> dict[str, str]:
    raw = request.target.get("inputs") or {}
    if not isinstance(raw, Mapping):
        raise refused(f"deploy.github_workflow.inputs of {request.service} must be a mapping")
    inputs = {str(key): "" if value is None else str(value) for key, value in raw.items()}
    inputs.update(
        request_id=request.request_id,
        sha=request.sha,
        version=request.version or "",
        action=request.action,
        environment=request.environment,
    )
    if len(inputs) > MAX_INPUTS:
        raise refused(
            f"the dispatch of {request.service} would send {len(inputs)} workflow inputs; "
            f"GitHub accepts at most {MAX_INPUTS} (releasebot sends request_id, sha, version, "
            "action and environment, so deploy.github_workflow.inputs may add at most 5 more)"
        )
    return inputs


def _opt_target(request: DeployRequest, key: str) -> str | None:
    value = request.target.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _check_repo(repo: str) -> str:
    owner, _, name = repo.partition("/")
    if not _REPO_RE.match(repo) or owner in (".", "..") or name in (".", ".."):
        raise refused(f"{repo!r} is not a GitHub repository (owner/name)")
    return repo
