"""What the outbox worker sends to on-call: which providers a service pages through, and
the event for one queued page or change (links back to the release, the deployed version)."""

from __future__ import annotations

from datetime import datetime

from bot.config import Oncall
from bot.domain.messages import PagerAlert, PagerChange
from bot.ports import PagerAction, PagerEvent
from bot.services.release_views import ReleaseView


def pager_targets(oncall: Oncall) -> list[tuple[str, str]]:
    """(provider, environment variable holding its key) for each configured provider."""
    targets = []
    if oncall.pagerduty is not None:
        targets.append(("pagerduty", oncall.pagerduty.routing_key_env))
    if oncall.opsgenie is not None:
        targets.append(("opsgenie", oncall.opsgenie.api_key_env))
    return targets


def pager_event(
    page: PagerAlert | PagerChange,
    view: ReleaseView,
    *,
    routing_key: str,
    public_url: str,
    now: datetime,
) -> PagerEvent:
    """A trigger or resolve of the deployment's alert, or a change event on its timeline."""
    action: PagerAction = "change"
    dedup_key: str | None = None
    severity: str | None = None
    if isinstance(page, PagerAlert):
        action = page.action  # type: ignore[assignment]
        dedup_key, severity = page.dedup_key, page.severity
    message_url = f"{public_url}/deployments/{view.deployment_id}"
    return PagerEvent(
        action=action,
        routing_key=routing_key,
        summary=page.summary,
        source=f"releasebot/{view.service}/{view.environment}",
        dedup_key=dedup_key,
        severity=severity or "error",
        links=((message_url, "Release in releasebot"),)
        + (((view.ci_url, "CI run"),) if view.ci_url else ()),
        custom_details={
            "service": view.service,
            "environment": view.environment,
            "sha": view.sha,
            "version": view.version,
            "state": view.state,
        },
        timestamp=now,
        component=view.service,
    )
