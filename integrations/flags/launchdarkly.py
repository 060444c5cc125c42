"""LaunchDarkly's REST API: a flag's targeting changed by semantic patch.

    PATCH {url}/api/v2/flags/{projectKey}/{flagKey}
    Authorization: <access token>          LD-API-Version: 20240415
    Content-Type: application/json; domain-model=launchdarkly.semanticpatch
    {"environmentKey": "production", "comment": "...",
     "instructions": [{"kind": "turnFlagOn"},
                      {"kind": "updateFallthroughVariationOrRollout",
                       "rolloutWeights": {"<true variation id>": 10000,
                                          "<false variation id>": 90000}}]}

A rollout step turns targeting on and serves the flag's `true` variation to the step's
share of contexts through the default rule (weights in thousandths of a percent, adding
up to 100000); the variation ids are read from the flag first (`GET` the same path with
`?env=`). The kill switch is `turnFlagOff`: everyone gets the off variation at once.
LaunchDarkly answers with the flag; its `_version` and the environment's `on` and
`_version` are the receipt.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from bot.config.flags import LaunchDarklyFlag
from bot.domain.errors import DeliveryFailed
from bot.domain.flags import FlagChange
from integrations.flags.common import Platform, send

API_VERSION = "20240415"
SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
WHOLE = 100_000  # rollout weights are thousandths of a percent


def rollout_weights(flag: dict[str, Any], percent: int) -> dict[str, int]:
    """`{true variation id: percent, false variation id: the rest}`, in thousandths."""
    ids: dict[bool, str] = {}
    for variation in flag.get("variations") or []:
        value = variation.get("value") if isinstance(variation, dict) else None
        if isinstance(value, bool) and variation.get("_id"):
            ids[value] = str(variation["_id"])
    if True not in ids or False not in ids:
        raise DeliveryFailed(
            f"launchdarkly: {flag.get('key', 'the flag')} is not a boolean flag: releasebot "
            "rolls out the true variation of a boolean flag",
            retryable=False,
        )
    share = percent * 1000
    return {ids[True]: share, ids[False]: WHOLE - share}


async def apply(
    client: httpx.AsyncClient,
    change: FlagChange,
    settings: LaunchDarklyFlag,
    *,
    api_key: str,
    comment: str,
    now: float,
) -> dict[str, Any]:
    """Send the change; returns the receipt (no secret in it)."""
    url = (
        f"{settings.url.rstrip('/')}/api/v2/flags/"
        f"{quote(settings.project, safe='')}/{quote(change.flag, safe='')}"
    )
    headers = {"Authorization": api_key, "LD-API-Version": API_VERSION}
    platform = Platform("launchdarkly", headers, api_key, now)
    weights: dict[str, int] | None = None
    if change.action == "off":
        instructions: list[dict[str, Any]] = [{"kind": "turnFlagOff"}]
    else:
        env_url = f"{url}?env={quote(settings.environment)}"
        _, flag = await send(client, "GET", env_url, platform=platform)
        weights = rollout_weights(flag if isinstance(flag, dict) else {}, change.percent)
        instructions = [
            {"kind": "turnFlagOn"},
            {"kind": "updateFallthroughVariationOrRollout", "rolloutWeights": weights},
        ]
    body = {
        "environmentKey": settings.environment,
        "comment": comment,
        "instructions": instructions,
    }
    status, answer = await send(
        client, "PATCH", url, platform=platform, body=body, content_type=SEMANTIC_PATCH
    )
    found = answer if isinstance(answer, dict) else {}
    env = (found.get("environments") or {}).get(settings.environment) or {}
    return {
        "platform": "launchdarkly",
        "status": status,
        "project": settings.project,
        "environment": settings.environment,
        "flag_version": found.get("_version"),
        "environment_version": env.get("_version"),
        "on": env.get("on"),
        "instructions": [i["kind"] for i in instructions],
        **({"rollout_weights": weights} if weights is not None else {}),
    }
