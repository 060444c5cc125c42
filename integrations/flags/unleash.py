"""Unleash's Admin API: a feature's strategy and its environment switched on or off.

    GET  {url}/api/admin/projects/{projectId}/features/{featureName}/environments/{env}/strategies
    PUT  .../environments/{env}/strategies/{strategyId}     (the feature's flexibleRollout)
    POST .../environments/{env}/strategies                  (add one when it has none)
         {"name": "flexibleRollout",
          "parameters": {"rollout": "10", "stickiness": "default", "groupId": "<feature>"},
          "constraints": [...]}                              (kept as they are)
    POST .../environments/{env}/on | .../off
    Authorization: <admin or personal access token>

A rollout step sets the `rollout` percentage of the feature's flexibleRollout strategy in
the environment (its stickiness, group and constraints are kept), then enables the
environment. The kill switch disables the environment at once. The strategy's id and the
rollout sent are the receipt.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from bot.config.flags import UnleashFlag
from bot.domain.flags import FlagChange
from integrations.flags.common import Platform, send

STRATEGY = "flexibleRollout"


def _strategies(answer: Any) -> list[dict[str, Any]]:
    listed = answer.get("strategies") if isinstance(answer, dict) else answer
    return [s for s in listed or [] if isinstance(s, dict)]


async def apply(
    client: httpx.AsyncClient,
    change: FlagChange,
    settings: UnleashFlag,
    *,
    token: str,
    now: float,
) -> dict[str, Any]:
    """Send the change; returns the receipt (no secret in it)."""
    base = (
        f"{settings.url.rstrip('/')}/api/admin/projects/{quote(settings.project, safe='')}"
        f"/features/{quote(change.flag, safe='')}/environments/"
        f"{quote(settings.environment, safe='')}"
    )
    platform = Platform("unleash", {"Authorization": token}, token, now)
    receipt: dict[str, Any] = {
        "platform": "unleash",
        "project": settings.project,
        "environment": settings.environment,
    }
    if change.action == "off":
        status, _ = await send(client, "POST", f"{base}/off", platform=platform)
        return {**receipt, "status": status, "enabled": False}
    _, listed = await send(client, "GET", f"{base}/strategies", platform=platform)
    existing = next((s for s in _strategies(listed) if s.get("name") == STRATEGY), None)
    parameters = {"stickiness": "default", "groupId": change.flag}
    if existing is not None:
        parameters.update({k: str(v) for k, v in (existing.get("parameters") or {}).items()})
    parameters["rollout"] = str(change.percent)
    body = {
        "name": STRATEGY,
        "parameters": parameters,
        "constraints": (existing or {}).get("constraints") or [],
    }
    if existing is not None:
        url = f"{base}/strategies/{quote(str(existing.get('id')), safe='')}"
        _, saved = await send(client, "PUT", url, body=body, platform=platform)
    else:
        _, saved = await send(client, "POST", f"{base}/strategies", body=body, platform=platform)
    strategy_id = (saved or {}).get("id") if isinstance(saved, dict) else None
    status, _ = await send(client, "POST", f"{base}/on", platform=platform)
    return {
        **receipt,
        "status": status,
        "enabled": True,
        "strategy": STRATEGY,
        "strategy_id": strategy_id or (existing or {}).get("id"),
        "rollout": parameters["rollout"],
        "strategy_added": existing is None,
    }
