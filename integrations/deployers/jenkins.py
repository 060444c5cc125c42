"""Deploy by building a Jenkins job: kind `jenkins` (target `{job, user_env?, token_env?}`).

    deployer = JenkinsDeployer(make_client(jenkins_url), user, api_token)
    result = await deployer.execute(request)     # promote, rollback, approve; reject is a no-op

    POST {J}/job/{name}/buildWithParameters?REQUEST_ID=..&SHA=..&VERSION=..&ACTION=..&ENVIRONMENT=..

(and `REF=..`, the branch or tag, when the build starts a deploy from chat: `/release deploy`).

Folders are written `a/b` and become `/job/a/job/b`; `target["params"]`, when a target has
them, are sent too (ours win on a clash). Authentication is HTTP basic `user:API token`, which
needs no CSRF crumb. A target may name its own credentials (`user_env`, `token_env`: the
environment variables holding the user and the API token, read through `secrets`); otherwise
the constructor's apply.

Jenkins answers 201 with `Location: {J}/queue/item/{id}/`. The deployer then polls
`{location}api/json` every `poll_interval` seconds (through the injectable `sleep`), at most
`max_polls` times, until `executable.url` appears and returns that build's URL. A queue item
Jenkins reports `cancelled` is a non-retryable failure. When polling runs out, or the queue
item cannot be read (it expired, the host in `Location` is not the client's, an error), the
result is "queued" with the queue item's URL: the build *was* requested, so it is not a
failure (failing would make the caller request a second build).

A build request is not idempotent and Jenkins has no key to deduplicate on: it is sent once,
and a lost answer is a retryable failure. Make the job refuse a `REQUEST_ID` it already ran.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    SecretSource,
    deploy_ref,
    explained,
    json_object,
    lookup_from,
    opt_str,
    refused,
    relative_to_base,
    require_action,
    require_target,
    secret_value,
    short_sha,
)
from integrations.errors import CredentialsError
from integrations.http import RetryPolicy, Sleep

__all__ = ["JenkinsDeployer", "job_path"]


class JenkinsDeployer:
    """`Deployer` that builds a parameterized Jenkins job and waits for it to leave the queue.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is Jenkins' root URL
      (`https://ci.example/` or `https://ci.example/jenkins/`).
    * **user**, **api_token** - the default credentials (None when every target names its own).
    * **secrets** - reads a target's `user_env` / `token_env`.
    * **sleep**, **poll_interval**, **max_polls** - how the queue item is polled.
    * **retry** - how calls retry (the build request itself is always sent once).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        user: str | None,
        api_token: str | None,
        *,
        secrets: SecretSource | None = None,
        sleep: Sleep = asyncio.sleep,
        poll_interval: float = 2.0,
        max_polls: int = 30,
        retry: RetryPolicy | None = None,
    ) -> None:
        if bool(user and user.strip()) != bool(api_token and api_token.strip()):
            raise CredentialsError("the Jenkins user and API token must be given together")
        if max_polls < 0:
            raise ValueError("max_polls must not be negative")
        self._client = client
        self._user = user.strip() if user else None
        self._api_token = api_token.strip() if api_token else None
        self._secrets = lookup_from(secrets) if secrets is not None else None
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._max_polls = max_polls
        self._retry = retry or RetryPolicy()

    async def execute(self, request: DeployRequest) -> DeployResult:
        if request.action == "reject":
            return DeployResult(detail="rejected: no Jenkins build was requested")
        require_action(request, ("promote", "rollback", "approve"))
        job = require_target(request, "job")
        path = f"{job_path(job)}/buildWithParameters"
        user, token, where = self._credentials(request)
        auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
        secrets = [token, auth.removeprefix("Basic ")]
        headers = {"Authorization": auth}
        try:
            response = await self._retry.request(
                self._client,
                "POST",
                path,
                params=_params(request),
                headers=headers,
                secrets=secrets,
                attempts=1,
            )
        except DeliveryFailed as failure:
            raise explained(
                failure,
                {
                    400: f"Jenkins refused the parameters; is {job} a parameterized job?",
                    401: f"Jenkins refused the credentials; check {where}",
                    403: f"the Jenkins user may not build {job} (it needs Job/Build); with a "
                    "password instead of an API token Jenkins also wants a CSRF crumb",
                    404: f"no Jenkins job {job} (write folders as a/b), or the user cannot see it",
                },
            ) from failure
        what = (
            f"{job} to {request.action} {request.service} in {request.environment} "
            f"at {short_sha(request.sha)}"
        )
        location = response.headers.get("location")
        if not location:
            return DeployResult(detail=f"queued {what} (Jenkins named no queue item)")
        if not location.endswith("/"):
            location += "/"
        queue_path = relative_to_base(self._client, location)
        if queue_path is None:
            return DeployResult(detail=f"queued {what}", url=location)
        return await self._wait_for_build(what, location, queue_path, headers, secrets)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _wait_for_build(
        self,
        what: str,
        location: str,
        queue_path: str,
        headers: Mapping[str, str],
        secrets: list[str],
    ) -> DeployResult:
        for poll in range(self._max_polls):
            try:
                response = await self._retry.request(
                    self._client,
                    "GET",
                    f"{queue_path}api/json",
                    headers=headers,
                    secrets=secrets,
                )
                item = json_object(response, f"GET {queue_path}api/json")
            except DeliveryFailed as failure:
                # The build was requested; an unreadable queue item does not undo that.
                return DeployResult(
                    detail=f"queued {what} (the queue item could not be read: {failure.reason})",
                    url=location,
                )
            if item.get("cancelled") is True:
                raise refused(f"Jenkins cancelled the queued build of {what} ({location})")
            executable = item.get("executable")
            if isinstance(executable, Mapping):
                url = opt_str(executable.get("url"))
                number = executable.get("number")
                if url:
                    which = f" #{number}" if isinstance(number, int) else ""
                    return DeployResult(detail=f"Jenkins started build{which} of {what}", url=url)
            if poll < self._max_polls - 1:
                await self._sleep(self._poll_interval)
        return DeployResult(detail=f"queued {what} (not started yet)", url=location)

    def _credentials(self, request: DeployRequest) -> tuple[str, str, str]:
        """(user, API token, what to check when Jenkins refuses them)."""
        user_env = _opt_target(request, "user_env")
        token_env = _opt_target(request, "token_env")
        user, token = self._user, self._api_token
        names = ["JENKINS_USER", "JENKINS_API_TOKEN"]
        if user_env or token_env:
            if self._secrets is None:
                raise refused(
                    f"deploy.jenkins of {request.service} names its credentials by environment "
                    "variable, but this deployer was given no way to read them"
                )
            if user_env:
                user = secret_value(self._secrets, user_env, "the Jenkins user")
                names[0] = user_env
            if token_env:
                token = secret_value(self._secrets, token_env, "the Jenkins API token")
                names[1] = token_env
        if not user or not token:
            raise refused(
                f"no Jenkins credentials for {request.service}: set JENKINS_USER and "
                "JENKINS_API_TOKEN, or user_env and token_env in its deploy.jenkins section"
            )
        return user, token, " and ".join(names)

    def __repr__(self) -> str:
        return f"JenkinsDeployer(base_url={str(self._client.base_url)!r}, user={self._user!r})"


def job_path(job: str) -> str:
    """`a/b` -> `/job/a/job/b`, each name percent-encoded."""
    parts = [part for part in job.strip().strip("/").split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise refused(f"{job!r} is not a Jenkins job name")
    return "".join(f"/job/{quote(part, safe='')}" for part in parts)


def _params(request: DeployRequest) -> dict[str, str | int]:
    raw = request.target.get("params") or {}
    if not isinstance(raw, Mapping):
        raise refused(f"deploy.jenkins.params of {request.service} must be a mapping")
    params: dict[str, str | int] = {str(key): _param(value) for key, value in raw.items()}
    params.update(
        REQUEST_ID=request.request_id,
        SHA=request.sha,
        VERSION=request.version or "",
        ACTION=request.action,
        ENVIRONMENT=request.environment,
    )
    if (ref := deploy_ref(request)) is not None:
        params["REF"] = ref  # the branch or tag a deploy from chat named
    return params


def _param(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _opt_target(request: DeployRequest, key: str) -> str | None:
    value = request.target.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None
