"""Any other flag system: a signed JSON body POSTed to a URL of yours.

    POST <url>
    Content-Type: application/json
    X-Releasebot-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>
    X-Releasebot-Delivery: flag-step-<step id>      (the same on every retry)
    {"event": "flag.change", "service": "checkout", "environment": "production",
     "flag": "new-checkout-flow", "action": "rollout" | "off", "percent": 10,
     "step_id": 7, "deployment_id": 3}

Answer 2xx once the change is applied (a JSON body's `id`, if any, is kept as the
receipt); 5xx and 429 are retried, any other status is given up on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from bot.config.flags import WebhookFlag
from bot.domain.flags import FlagChange
from integrations.flags.common import Platform, send


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(change: FlagChange, environment: str) -> dict[str, Any]:
    return {
        "event": "flag.change",
        "service": change.service,
        "environment": environment,
        "flag": change.flag,
        "action": change.action,
        "percent": change.percent,
        "step_id": change.step_id,
        "deployment_id": change.deployment_id,
    }


async def apply(
    client: httpx.AsyncClient,
    change: FlagChange,
    settings: WebhookFlag,
    *,
    environment: str,
    secret: str,
    now: float,
) -> dict[str, Any]:
    """Send the change; returns the receipt (no secret in it)."""
    body = body_of(change, environment)
    headers = {
        "X-Releasebot-Signature": signature(json.dumps(body).encode(), secret),
        "X-Releasebot-Delivery": f"flag-step-{change.step_id}",
    }
    status, answer = await send(
        client,
        "POST",
        settings.url,
        platform=Platform("webhook", headers, secret, now),
        body=body,
    )
    found = answer.get("id") if isinstance(answer, dict) else None
    return {"platform": "webhook", "status": status, "id": None if found is None else str(found)}
