"""Argo CD notification payloads -> DeployEvent (pure functions; no I/O).

Argo CD has no webhook payload of its own: the body is whatever the template in
`argocd-notifications-cm` renders. This module reads the body of the templates shipped in
docs/argocd-notifications.md (tests render them and parse the result, so the two agree):

    {"event": "sync-succeeded", "app": "storefront-prod", "revision": "<40 hex>",
     "syncRevision": "<40 hex>", "phase": "Succeeded", "health": "Healthy", "message": "...",
     "startedAt": "...", "finishedAt": "...", "url": "https://argocd.example/applications/...",
     "initiatedBy": "alice", "automated": false}

With Argo Rollouts, a template may add `"resources": {{toJson .app.status.resources}}` (the
application's resource statuses); the Rollouts among them (kind `Rollout`, group
`argoproj.io`) travel in the event's `extra["rollouts"]` as JSON, and the `rollout-progress`
event (a Rollout progressing or paused after the sync applied it) reports the sync's
commit again, as succeeded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain import rollouts, states
from bot.domain.events import DeployEvent, DeployTarget
from integrations.payloads import (
    SHA_RE,
    PayloadError,
    get_path,
    optional_str,
    require_mapping,
    require_str,
)

# Our template's `event` -> our state.
EVENTS: dict[str, str] = {
    "sync-running": states.IN_PROGRESS,
    "sync-succeeded": states.SUCCEEDED,
    "sync-failed": states.FAILED,
    "health-degraded": states.FAILED,
    "rollout-progress": states.SUCCEEDED,
}

# What a Go template prints for a missing value when a template uses `{{.x}}` (not toJson).
NO_VALUE = "<no value>"


@dataclass(frozen=True)
class Parsed:
    """What a delivery means, and the delivery id it derives when the sender set none.

    `delivery` hashes (app, revision, event, startedAt, finishedAt): Argo CD's own retries of
    one notification send the same body, so they de-duplicate.
    """

    event: DeployEvent | None
    note: str | None = None
    delivery: str = ""


def parse(payload: Any) -> Parsed:
    """Turn one rendered notification into a DeployEvent; raises PayloadError when malformed."""
    body = require_mapping(payload, "")
    event_name = require_str(body, "event")
    if event_name not in EVENTS:
        raise PayloadError("event", f"must be one of {', '.join(EVENTS)}")
    app = require_str(body, "app")
    revision = _revision(body)
    started = _text(body, "startedAt")
    finished = _text(body, "finishedAt")
    found = _rollouts(body)
    delivery = _delivery_id(app, revision, event_name, started, finished, found)
    message = _text(body, "message")
    description = message
    if event_name == "health-degraded":
        health = _text(body, "health") or "Degraded"
        description = f"health degraded ({health})" + (f": {message}" if message else "")
    actor = _text(body, "initiatedBy")
    if actor is None and get_path(body, "automated") is True:
        actor = "automated sync"
    return Parsed(
        DeployEvent(
            target=DeployTarget(provider="argocd", app=app),
            sha=revision,
            status=EVENTS[event_name],
            source_event=f"argocd.{event_name}",
            # One sync operation (running, then succeeded or failed) shares its start time.
            external_id=f"sync:{started}" if started else None,
            url=_link(_text(body, "url")),
            actor=actor,
            description=description,
            occurred_at=_when(finished) or _when(started),
            extra={k: v for k, v in (("phase", _text(body, "phase")), ("rollouts", found)) if v},
        ),
        delivery=delivery,
    )


def _text(body: Any, key: str) -> str | None:
    """A template value, None when Argo CD had none (empty, null or Go's `<no value>`)."""
    value = optional_str(body, key)
    if value is None or value.strip() in ("", NO_VALUE):
        return None
    return value


def _link(url: str | None) -> str | None:
    """The app's page, unless `context.argocdUrl` was unset and left no usable link."""
    return url if url is not None and url.startswith(("https://", "http://")) else None


def _revision(body: Any) -> str:
    """`revision` (the sync result's), else `syncRevision` (the compared target), when the
    operation has no result yet; either must be a full commit sha."""
    revision = _text(body, "revision")
    fallback = _text(body, "syncRevision")
    for value in (revision, fallback):
        if value is not None and SHA_RE.match(value.strip().lower()):
            return value.strip().lower()
    if revision is None and fallback is None:
        raise PayloadError("revision")
    raise PayloadError("revision", "must be a full commit sha")


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _rollouts(body: Any) -> str | None:
    """The application's Argo Rollouts (`resources[]` of kind Rollout, group argoproj.io) as
    JSON `[{name, namespace, version, health, message}]`, or None when it has none."""
    resources = get_path(body, "resources")
    if resources is None:
        return None
    if not isinstance(resources, list):
        raise PayloadError("resources", "must be a list")
    found = []
    for item in resources[:500]:
        if not isinstance(item, dict) or item.get("kind") != rollouts.KIND:
            continue
        if item.get("group") != rollouts.GROUP or not isinstance(item.get("name"), str):
            continue
        given = item.get("health")
        health: dict[str, Any] = given if isinstance(given, dict) else {}
        found.append(
            {
                "name": item["name"][:253],
                "namespace": str(item.get("namespace") or "")[:63],
                "version": str(item.get("version") or "v1alpha1")[:20],
                "health": str(health.get("status") or "")[:20],
                "message": str(health.get("message") or "")[:300],
            }
        )
    return json.dumps(found, separators=(",", ":")) if found else None


def _delivery_id(
    app: str,
    revision: str,
    event: str,
    started: str | None,
    finished: str | None,
    found: str | None = None,
) -> str:
    fields: list[str | None] = [app, revision, event, started, finished]
    if found is not None:
        # A Rollout moving on (or pausing again) is news even for the same sync.
        fields.append(found)
    key = json.dumps(fields, separators=(",", ":"))
    return "argocd-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
