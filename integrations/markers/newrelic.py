"""New Relic change tracking: a deployment recorded through NerdGraph.

`POST https://api.newrelic.com/graphql` (`api.eu.newrelic.com` in the EU region) with the
`API-Key` header (a user key) and the mutation

    mutation { changeTrackingCreateDeployment(deployment: {entityGuid: "...", version: "...",
        timestamp: <epoch ms>, description: "...", user: "releasebot", deploymentType: BASIC})
      { deploymentId entityGuid } }

The answer's `deploymentId` is the receipt. GraphQL `errors` in a 200 (an unknown entity, a
bad argument) are given up on like a 4xx; HTTP errors follow `integrations.markers.common`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from bot.config.markers import NewRelicMarkers
from bot.domain.errors import DeliveryFailed
from bot.domain.messages import DeployMarker
from integrations.markers.common import send


def graphql_url(region: str) -> str:
    host = "api.eu.newrelic.com" if region == "eu" else "api.newrelic.com"
    return f"https://{host}/graphql"


def mutation(marker: DeployMarker, entity_guid: str) -> str:
    """The mutation, its strings quoted as GraphQL (JSON) string literals."""
    moment = marker.ended_at or marker.started_at
    fields = {
        "entityGuid": json.dumps(entity_guid),
        "version": json.dumps(marker.version),
        "timestamp": str(int(datetime.fromisoformat(moment).timestamp() * 1000)),
        "description": json.dumps(f"{marker.title}: {marker.text}"[:1000]),
        "user": json.dumps("releasebot"),
        "deploymentType": "BASIC",
    }
    arguments = ", ".join(f"{name}: {value}" for name, value in fields.items())
    return (
        f"mutation {{ changeTrackingCreateDeployment(deployment: {{{arguments}}}) "
        "{ deploymentId entityGuid } }"
    )


async def mark(
    client: httpx.AsyncClient,
    marker: DeployMarker,
    settings: NewRelicMarkers,
    *,
    api_key: str,
    now: float,
) -> str:
    """Record the deployment; returns New Relic's deploymentId."""
    answer: Any = await send(
        client,
        "POST",
        graphql_url(settings.region),
        platform="newrelic",
        json={"query": mutation(marker, settings.entity_guid)},
        headers={"API-Key": api_key},
        secret=api_key,
        now=now,
    )
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if errors:
        words = "; ".join(str(e.get("message") if isinstance(e, dict) else e) for e in errors)
        raise DeliveryFailed(
            f"newrelic: changeTrackingCreateDeployment: {words[:200]}", retryable=False
        )
    try:
        found = answer["data"]["changeTrackingCreateDeployment"]["deploymentId"]
    except (KeyError, TypeError):
        raise DeliveryFailed("newrelic: no deploymentId in the answer", retryable=False) from None
    return str(found)
