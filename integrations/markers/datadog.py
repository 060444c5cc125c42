"""Datadog events (Events API v1): `POST https://api.<site>/api/v1/events` with `DD-API-KEY`.

    {"title", "text", "tags": ["service:checkout", "env:production", "version:<sha>",
     "source:releasebot", ...], "alert_type": "success" | "error" | "warning" | "info",
     "date_happened": <epoch seconds>, "aggregation_key": "releasebot-<deployment id>"}

Datadog answers 202 `{"status": "ok", "event": {"id", "id_str", "url", ...}}`; the event's
id is the receipt. Errors come as `{"errors": ["..."]}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from bot.config.markers import DatadogMarkers
from bot.domain.messages import DeployMarker
from integrations.markers.common import send

ALERT_TYPES = {
    ("deploy", "succeeded"): "success",
    ("deploy", "failed"): "error",
    ("rollback", ""): "warning",
    ("break_glass", ""): "warning",
    ("verification_failed", ""): "error",
}


def alert_type(marker: DeployMarker) -> str:
    return ALERT_TYPES.get((marker.event, marker.outcome), "info")


async def mark(
    client: httpx.AsyncClient,
    marker: DeployMarker,
    settings: DatadogMarkers,
    *,
    api_key: str,
    now: float,
) -> str:
    """Post the event; returns Datadog's id for it."""
    moment = marker.ended_at or marker.started_at
    body = {
        "title": marker.title,
        "text": marker.text,
        "tags": [
            f"service:{marker.service}",
            f"env:{marker.environment}",
            f"version:{marker.version}",
            "source:releasebot",
            f"event:{marker.event}",
            *settings.tags,
        ],
        "alert_type": alert_type(marker),
        "date_happened": int(datetime.fromisoformat(moment).timestamp()),
        "aggregation_key": f"releasebot-{marker.deployment_id}",
    }
    answer: Any = await send(
        client,
        "POST",
        f"https://api.{settings.site}/api/v1/events",
        platform="datadog",
        json=body,
        headers={"DD-API-KEY": api_key},
        secret=api_key,
        now=now,
    )
    event = answer.get("event") if isinstance(answer, dict) else None
    found = (event.get("id_str") or event.get("id")) if isinstance(event, dict) else None
    return str(found) if found is not None else ""
