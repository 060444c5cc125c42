"""Decide a GitHub custom deployment protection rule: kind `github_protection_rule`.

    deployer = GitHubProtectionRuleDeployer(make_client(api_url, headers=GITHUB_HEADERS), app)
    await deployer.execute(request)   # action approve | reject

GitHub sends the App's webhook a `deployment_protection_rule` event with a
`deployment_callback_url`
(`{api}/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`), the
`environment` and the `installation.id`; the webhook handler puts them in
`request.context["callback_url"]`, `["environment_name"]` and `["installation_id"]`.
The decision is

    POST {callback_url}
    {"environment_name": ..., "state": "approved" | "rejected",
     "comment": "Approved in Slack by <actor>: <reason>"}

with an installation token of that installation; GitHub answers 204. The App needs
Deployments read and write and Actions read, and can decide only its own rules.

The callback URL comes from a webhook body, so it is checked before a token goes anywhere:
it must lie under the client's API base URL (same scheme, host and port) and have the
documented shape; anything else is refused (not retryable) without a request.

Posting the same decision again is harmless, so the call is retried like any other. A 422
whose message says the rule was *already* approved, rejected or decided counts as done
(the earlier attempt got through; GitHub's exact wording is not documented, so only a
message saying so is trusted); any other 422 is a non-retryable failure with GitHub's words.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    decision_comment,
    explained,
    refused,
    relative_to_base,
    require_action,
    require_context,
)
from integrations.deployers.github_workflow import GitHubAuth, installation_id
from integrations.github.client import GitHubAppAuth
from integrations.http import RetryPolicy

__all__ = ["GitHubProtectionRuleDeployer"]

CALLBACK_PATH = re.compile(
    r"^/repos/(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/actions/runs/(?P<run>\d+)"
    r"/deployment_protection_rule$"
)
ALREADY_DECIDED = re.compile(
    r"\balready\b.{0,40}\b(approved|rejected|decided|reviewed|responded)\b", re.IGNORECASE
)
WEBHOOK = "the deployment_protection_rule webhook"


class GitHubProtectionRuleDeployer:
    """`Deployer` that approves or rejects a waiting deployment protection rule.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the GitHub API root; callback
      URLs elsewhere are refused.
    * **app** - the GitHub App whose rule it is (an installation token decides).
    * **retry** - how calls retry.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        app: GitHubAppAuth,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._github = GitHubAuth(client, app, retry or RetryPolicy())

    async def execute(self, request: DeployRequest) -> DeployResult:
        require_action(request, ("approve", "reject"))
        callback = str(require_context(request, "callback_url", WEBHOOK))
        environment = str(require_context(request, "environment_name", WEBHOOK))
        installation = installation_id(require_context(request, "installation_id", WEBHOOK))
        path = self._callback_path(callback)
        state = "approved" if request.action == "approve" else "rejected"
        body = {
            "environment_name": environment,
            "state": state,
            "comment": decision_comment(request),
        }
        run_url = self._run_page(path)
        try:
            await self._github.request("POST", path, installation=installation, json=body)
        except DeliveryFailed as failure:
            if failure.status == 422 and ALREADY_DECIDED.search(_message(failure.reason)):
                return DeployResult(
                    detail=f"GitHub had already recorded the decision for {environment} "
                    f"({_message(failure.reason)})",
                    url=run_url,
                )
            raise explained(
                failure,
                {
                    401: "GitHub refused the installation token",
                    403: "the GitHub App may not decide this rule; it needs Deployments "
                    "read and write and Actions read, and can decide only its own rules",
                    404: "the workflow run or its protection rule was not found, or the "
                    "App cannot see the repository",
                    422: f"GitHub refused the decision for environment {environment!r}",
                },
            ) from failure
        return DeployResult(
            detail=f"{state} the GitHub deployment protection rule for {environment}",
            url=run_url,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _callback_path(self, callback: str) -> str:
        path = relative_to_base(self._client, callback)
        if path is None or not CALLBACK_PATH.match(path):
            try:
                where = urlsplit(callback).hostname or "an unknown host"
            except ValueError:
                where = "an unknown host"
            raise refused(
                "refusing to send a GitHub token to the protection rule callback on "
                f"{where}: it is not a deployment_protection_rule URL "
                f"under {self._client.base_url}"
            )
        return path

    def _run_page(self, path: str) -> str | None:
        """The run's page on github.com or a GitHub Enterprise Server, when it can be told."""
        found = CALLBACK_PATH.match(path)
        if found is None:
            return None
        base = self._client.base_url
        suffix = f"{found['repo']}/actions/runs/{found['run']}"
        if base.host == "api.github.com":
            return f"https://github.com/{suffix}"
        base_path = base.path.rstrip("/")
        if base_path.endswith("/api/v3"):
            root = str(base.copy_with(path=base_path[: -len("/api/v3")] + "/", query=None))
            return root + suffix
        return None

    def __repr__(self) -> str:
        return f"GitHubProtectionRuleDeployer(base_url={str(self._client.base_url)!r})"


def _message(reason: str) -> str:
    """The host's words in a `request_with_retries` reason (`POST /path: 422 <message>`)."""
    _, _, rest = reason.partition(": ")
    return rest
