"""Deploy through Argo CD: kind `argocd` (target `{app}`).

    deployer = ArgoCDDeployer(make_client(argocd_url), token)     # ARGOCD_URL, ARGOCD_TOKEN
    await deployer.execute(request)

- **promote / approve**: `POST /api/v1/applications/{app}/sync {"revision": sha, "prune": false}`
  (200 with the Application). Argo CD then syncs; its notifications report the outcome.
- **rollback** to `request.sha` (the revision to go back to): `GET /api/v1/applications/{app}`,
  pick the newest `status.history[]` entry whose `revision` (or, for multi-source apps, one of
  its `revisions`) is that sha, then `POST /api/v1/applications/{app}/rollback {"id": <id>}`.
  A revision the history does not hold is a non-retryable failure.
- **reject**: starts nothing.

Authentication is `Authorization: Bearer <token>` (an account or project token).

Argo CD's errors are `{error, code, message}` (gRPC codes over HTTP):

- "another operation is already in progress" (400, FailedPrecondition): retryable after
  30 s. It is also how a repeated request shows up while the first one runs, so syncs and
  rollbacks are retried like other calls;
- "rollback cannot be initiated when auto-sync is enabled" (400, FailedPrecondition): not
  retryable, and the reason says to disable auto-sync to roll back from releasebot;
- other 4xx: not retryable, with Argo CD's message (403 is also what an app the token cannot
  see looks like).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    explained,
    json_object,
    refused,
    require_action,
    require_target,
    short_sha,
)
from integrations.errors import CredentialsError
from integrations.http import RetryPolicy

__all__ = ["OPERATION_IN_PROGRESS_RETRY_AFTER", "ArgoCDDeployer"]

OPERATION_IN_PROGRESS_RETRY_AFTER = 30.0
"""Seconds to wait when Argo CD is busy with another operation on the application."""

IN_PROGRESS = "another operation is already in progress"
AUTO_SYNC = "auto-sync is enabled"


class ArgoCDDeployer:
    """`Deployer` that syncs an Argo CD application to a revision, or rolls it back.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` whose `base_url` is the Argo CD server
      (`https://argocd.example`); the result links to the application's page there.
    * **token** - an Argo CD API token.
    * **retry** - how calls retry.
    """

    def __init__(
        self, client: httpx.AsyncClient, token: str, *, retry: RetryPolicy | None = None
    ) -> None:
        if not token.strip():
            raise CredentialsError("ArgoCDDeployer needs a token")
        self._client = client
        self._token = token.strip()
        self._retry = retry or RetryPolicy()

    async def execute(self, request: DeployRequest) -> DeployResult:
        if request.action == "reject":
            return DeployResult(detail="rejected: Argo CD was not asked to sync")
        require_action(request, ("promote", "approve", "rollback"))
        app = require_target(request, "app")
        app_path = f"/api/v1/applications/{quote(app, safe='')}"
        if not request.sha:
            raise refused(f"no revision to {request.action} {app} to")
        if request.action == "rollback":
            return await self._rollback(app, app_path, request.sha)
        await self._call(
            "POST", f"{app_path}/sync", app, json={"revision": request.sha, "prune": False}
        )
        return DeployResult(
            detail=f"Argo CD is syncing {app} to {short_sha(request.sha)}", url=self._page(app)
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _rollback(self, app: str, app_path: str, sha: str) -> DeployResult:
        application = json_object(await self._call("GET", app_path, app), f"GET {app_path}")
        history_id = _history_id(application, sha)
        if history_id is None:
            raise refused(
                f"revision {sha} is not in the application's history ({app}); "
                "Argo CD can roll back only to a revision it deployed"
            )
        await self._call("POST", f"{app_path}/rollback", app, json={"id": history_id})
        return DeployResult(
            detail=f"Argo CD is rolling {app} back to {short_sha(sha)} (history id {history_id})",
            url=self._page(app),
        )

    async def _call(self, method: str, path: str, app: str, *, json: Any = None) -> httpx.Response:
        try:
            return await self._retry.request(
                self._client,
                method,
                path,
                headers={"Authorization": f"Bearer {self._token}"},
                json=json,
                secrets=[self._token],
            )
        except DeliveryFailed as failure:
            raise _mapped(failure, app) from failure

    def _page(self, app: str) -> str:
        return f"{str(self._client.base_url).rstrip('/')}/applications/{quote(app, safe='')}"

    def __repr__(self) -> str:
        return f"ArgoCDDeployer(base_url={str(self._client.base_url)!r})"


def _mapped(failure: DeliveryFailed, app: str) -> DeliveryFailed:
    text = failure.reason.lower()
    if failure.status is not None and 400 <= failure.status < 500:
        if IN_PROGRESS in text:
            return DeliveryFailed(
                f"{failure.reason} (Argo CD is busy with {app}; trying again later)",
                retryable=True,
                retry_after=OPERATION_IN_PROGRESS_RETRY_AFTER,
                status=failure.status,
            )
        if AUTO_SYNC in text:
            return DeliveryFailed(
                f"{failure.reason} (disable auto-sync on {app} to roll back from releasebot, "
                "or roll back by reverting in Git)",
                retryable=False,
                status=failure.status,
            )
    return explained(
        failure,
        {
            401: "Argo CD refused the token; check ARGOCD_TOKEN",
            403: f"the token may not act on {app}, or there is no such application",
            404: f"no Argo CD application {app}",
        },
    )


def _history_id(application: Mapping[str, Any], sha: str) -> int | None:
    """The id of the newest history entry that deployed `sha` (a full or abbreviated sha)."""
    status = application.get("status")
    history = status.get("history") if isinstance(status, Mapping) else None
    if not isinstance(history, list):
        return None
    wanted = sha.strip().lower()
    best: int | None = None
    for entry in history:
        if not isinstance(entry, Mapping):
            continue
        ident = entry.get("id")
        if not isinstance(ident, int) or isinstance(ident, bool):
            continue
        extra = entry.get("revisions")
        revisions = [entry.get("revision"), *(extra if isinstance(extra, list) else [])]
        if any(_same_revision(value, wanted) for value in revisions):
            best = ident if best is None else max(best, ident)
    return best


def _same_revision(value: object, wanted: str) -> bool:
    if not isinstance(value, str) or not value:
        return False
    have = value.strip().lower()
    if have == wanted:
        return True
    # An abbreviated git sha (at least 7 hex digits) names the full one it starts.
    short, full = sorted((have, wanted), key=len)
    return len(short) >= 7 and len(full) == 40 and full.startswith(short) and _hex(short)


def _hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)
