"""Grafana annotations (HTTP API, `Authorization: Bearer <service account token>`).

- a deploy's start: `POST /api/annotations {time, tags, text, dashboardUID?}` -> `{"id": 1,
  "message": "Annotation added"}`; the id is kept (audited) to close the region;
- its end: `PATCH /api/annotations/:id {timeEnd, tags, text}`; when no region was opened (the
  deploy was first seen finished, or the start was given up on) one `POST` with `time` and
  `timeEnd` makes the whole region;
- a moment (rollback, break-glass, failed verification): `POST` with `time` only.

Times are epoch milliseconds. Tags: `service:<name>`, `environment:<name>`,
`version:<sha>`, `releasebot`, the event, and the service's own `tags`. Without
`dashboard_uid` the annotation belongs to the organization and dashboards show it by tag.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx

from bot.config.markers import GrafanaMarkers
from bot.domain.errors import DeliveryFailed
from bot.domain.messages import DeployMarker
from integrations.markers.common import send

OpenedRegion = Callable[[DeployMarker], Awaitable[str | None]]


def millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def tags_of(marker: DeployMarker, extra: list[str]) -> list[str]:
    return [
        f"service:{marker.service}",
        f"environment:{marker.environment}",
        f"version:{marker.version}",
        "releasebot",
        marker.event.replace("_", "-"),
        *extra,
    ]


async def mark(
    client: httpx.AsyncClient,
    marker: DeployMarker,
    settings: GrafanaMarkers,
    *,
    url: str,
    token: str,
    opened_region: OpenedRegion,
    now: float,
) -> str:
    """Send the annotation (or close its region); returns the annotation's id."""
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"tags": tags_of(marker, list(settings.tags)), "text": _text(marker)}

    async def call(method: str, path: str, payload: dict[str, Any]) -> Any:
        return await send(
            client,
            method,
            base + path,
            platform="grafana",
            json=payload,
            headers=headers,
            secret=token,
            now=now,
        )

    if marker.phase == "end" and marker.ended_at is not None:
        opened = await opened_region(marker)
        if opened is not None:
            await call(
                "PATCH", f"/api/annotations/{opened}", {**body, "timeEnd": millis(marker.ended_at)}
            )
            return opened
        body["timeEnd"] = millis(marker.ended_at)
    body["time"] = millis(marker.started_at)
    if settings.dashboard_uid:
        body["dashboardUID"] = settings.dashboard_uid
    answer = await call("POST", "/api/annotations", body)
    found = answer.get("id") if isinstance(answer, dict) else None
    if found is None:
        raise DeliveryFailed("grafana: POST /api/annotations: no id in the answer", retryable=False)
    return str(found)


def _text(marker: DeployMarker) -> str:
    return f"{marker.title}\n{marker.text}" if marker.text else marker.title
