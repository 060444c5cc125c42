"""Deploy by calling a URL of yours with a signed JSON body: kind `webhook` (`{url, secret_env}`).

    deployer = WebhookDeployer(make_client(""), secret_lookup)
    await deployer.execute(request)          # every action: approve, reject, promote, rollback

    POST {url}
    Content-Type: application/json
    X-Releasebot-Delivery: <request_id>
    X-Releasebot-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>

    {"action", "service", "environment", "sha", "version", "request_id", "reason", "actor"}

plus `"ref"` (the branch or tag) when the call starts a deploy from chat (`/release deploy`).

The secret is read through the `SecretLookup` from the environment variable `secret_env`
names, at each call; a missing one is a non-retryable failure naming the variable. To check a
delivery, compute the HMAC over the raw body bytes as received and compare in constant time,
like GitHub's `X-Hub-Signature-256`:

    expected = "sha256=" + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Releasebot-Signature"])

Any 2xx is done. Failures are retried like other calls (network errors and 5xx in place, then
a retryable failure), so the receiver may see a delivery more than once: deduplicate on
`X-Releasebot-Delivery`, which stays the same across retries. Failure reasons name the URL's
host only, since webhook URLs often carry a token in their path.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot.domain.errors import DeliveryFailed
from bot.ports import DeployRequest, DeployResult
from integrations.deployers import (
    SecretSource,
    deploy_ref,
    lookup_from,
    refused,
    require_action,
    require_target,
    secret_value,
)
from integrations.http import RetryPolicy

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "WebhookDeployer", "sign"]

SIGNATURE_HEADER = "X-Releasebot-Signature"
DELIVERY_HEADER = "X-Releasebot-Delivery"


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of body>`, the value of `X-Releasebot-Signature`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDeployer:
    """`Deployer` that POSTs a signed JSON description of the action to a target's URL.

    **Parameters:**

    * **client** - an `httpx.AsyncClient` (no base URL needed; targets give absolute URLs).
    * **secret_lookup** - `name -> value` (or a mapping) for the signing secrets.
    * **retry** - how calls retry.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        secret_lookup: SecretSource,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._secrets = lookup_from(secret_lookup)
        self._retry = retry or RetryPolicy()

    async def execute(self, request: DeployRequest) -> DeployResult:
        require_action(request, ("approve", "reject", "promote", "rollback"))
        url = require_target(request, "url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise refused(f"deploy.webhook.url of {request.service} is not an http(s) URL")
        secret_env = require_target(request, "secret_env")
        secret = secret_value(self._secrets, secret_env, "the webhook signing secret")
        payload: dict[str, Any] = {
            "action": request.action,
            "service": request.service,
            "environment": request.environment,
            "sha": request.sha,
            "version": request.version,
            "request_id": request.request_id,
            "reason": request.reason,
            "actor": request.actor,
        }
        if (ref := deploy_ref(request)) is not None:
            payload["ref"] = ref  # the branch or tag a deploy from chat named
        # The exact bytes httpx will send for `json=payload`, so the signature covers them.
        try:
            body = httpx.Request("POST", url, json=payload).content
        except (httpx.InvalidURL, ValueError):
            raise refused(f"deploy.webhook.url of {request.service} is not a valid URL") from None
        headers = {
            SIGNATURE_HEADER: sign(secret, body),
            DELIVERY_HEADER: request.request_id,
            "Content-Type": "application/json",
        }
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        try:
            response = await self._retry.request(
                self._client, "POST", url, headers=headers, json=payload, secrets=[secret]
            )
        except DeliveryFailed as failure:
            raise DeliveryFailed(
                failure.reason.replace(url.split("?", 1)[0], f"{parts.scheme}://{host}/..."),
                retryable=failure.retryable,
                retry_after=failure.retry_after,
                status=failure.status,
            ) from failure
        return DeployResult(
            detail=(
                f"sent {request.action} of {request.service} in {request.environment} "
                f"to {host} (HTTP {response.status_code})"
            )
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return "WebhookDeployer()"
