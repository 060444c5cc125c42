"""Argo Rollouts through Argo CD's API: read a Rollout's live state, run its actions.

    ledger = RolloutLedger(db, clock, config)
    senders = RolloutSenders(make_client(argocd_url), token, ledger=ledger)
    OutboxWorker(..., more={**senders.handlers()})

- **read** (`RolloutRefresh`): `GET /api/v1/applications/{app}/resource?namespace=&resourceName=
  &version=&kind=Rollout&group=argoproj.io` answers `{"manifest": "<the live object as a JSON
  string>"}`; `bot.domain.rollouts.status_of` reads the step, the steps and the pause from it.
- **act** (`RolloutAction`): `POST /api/v1/applications/{app}/resource/actions` with the same
  query and the action name as a JSON string body (`"resume"`, `"promote-full"`, `"abort"`),
  the resource actions API Argo CD 2.x serves (Argo CD's `argocd app actions run`). Argo CD
  answers 200 with an empty object once it patched the Rollout; that answer is the receipt.

Authentication is `Authorization: Bearer <token>`; the token's project role needs
`applications, get` to read and `applications, action/argoproj.io/Rollout/<action>, ...` to
act. 429, 5xx and network errors are retried by the outbox; any other answer (403: a role
without the action, or an app the token cannot see) is recorded as Argo CD's refusal.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from bot.domain import rollouts as rules
from bot.domain.errors import DeliveryFailed
from integrations.errors import CredentialsError
from integrations.http import RetryPolicy

Handler = Callable[[Any, Any], Awaitable[None]]


class Ledger(Protocol):
    """Where answers are recorded (`bot.usecases.rollouts.RolloutLedger`)."""

    async def observed(
        self, refresh: rules.RolloutRefresh, status: rules.RolloutStatus
    ) -> None: ...

    async def answered(
        self,
        action: rules.RolloutAction,
        receipt: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None: ...


class RolloutSenders:
    """Sends `RolloutRefresh` and `RolloutAction` rows to Argo CD's API server."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: str,
        *,
        ledger: Ledger,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not token.strip():
            raise CredentialsError("RolloutSenders needs an Argo CD token")
        self._client = client
        self._token = token.strip()
        self._ledger = ledger
        self._retry = retry or RetryPolicy(attempts=1)

    def handlers(self) -> dict[str, Handler]:
        """The outbox kinds and their senders."""
        return {
            rules.RolloutRefresh.KIND: self._refresh,
            rules.RolloutAction.KIND: self._act,
        }

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _refresh(self, row: Any, _batch: object) -> None:
        refresh = rules.RolloutRefresh.from_payload(row.payload)
        ref = refresh.rollout
        response = await self._call("GET", f"{_app_path(ref)}/resource", ref)
        manifest = _manifest(response)
        await self._ledger.observed(refresh, rules.status_of(manifest))

    async def _act(self, row: Any, _batch: object) -> None:
        action = rules.RolloutAction.from_payload(row.payload)
        ref = action.rollout
        try:
            response = await self._call(
                "POST", f"{_app_path(ref)}/resource/actions", ref, body=action.action
            )
        except DeliveryFailed as failure:
            if not failure.retryable:
                await self._ledger.answered(action, reason=failure.reason)
            raise
        await self._ledger.answered(action, receipt=_receipt(response))

    async def _call(
        self, method: str, path: str, ref: rules.RolloutRef, *, body: str | None = None
    ) -> httpx.Response:
        params = {
            "namespace": ref.namespace,
            "resourceName": ref.name,
            "version": ref.version,
            "kind": rules.KIND,
            "group": rules.GROUP,
        }
        try:
            return await self._retry.request(
                self._client,
                method,
                path,
                params=params,
                headers={"Authorization": f"Bearer {self._token}"},
                json=body,
                secrets=[self._token],
            )
        except DeliveryFailed as failure:
            raise _explained(failure, ref) from failure

    def __repr__(self) -> str:
        return f"RolloutSenders(base_url={str(self._client.base_url)!r})"


def _app_path(ref: rules.RolloutRef) -> str:
    return f"/api/v1/applications/{quote(ref.app, safe='')}"


def _explained(failure: DeliveryFailed, ref: rules.RolloutRef) -> DeliveryFailed:
    meaning = {
        401: "Argo CD refused the token; check ARGOCD_TOKEN",
        403: f"the token may not act on the Rollout {ref.name} of {ref.app}, "
        "or there is no such application",
        404: f"Argo CD knows no Rollout {ref.name} in {ref.app}",
    }.get(failure.status or 0)
    if failure.retryable or meaning is None:
        return failure
    return DeliveryFailed(f"{failure.reason} ({meaning})", retryable=False, status=failure.status)


def _manifest(response: httpx.Response) -> Mapping[str, Any]:
    """The live object of `{"manifest": "<JSON>"}`; a reply of another shape is not retried."""
    try:
        body = response.json()
        manifest = json.loads(body["manifest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DeliveryFailed(
            "Argo CD answered without the Rollout's manifest", retryable=False
        ) from exc
    if not isinstance(manifest, dict):
        raise DeliveryFailed("Argo CD's manifest of the Rollout is not an object", retryable=False)
    return manifest


def _receipt(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return {"status": response.status_code, "body": body if isinstance(body, dict) else {}}
