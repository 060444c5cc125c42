"""What the outbox worker sends to on-call: which providers a service pages through, the
event for one queued page or change (links back to the release, the deployed version), and
the thread lines that mention whoever is on call now.

Who is mentioned: the people PagerDuty says are on call now for the service's escalation
policy (`oncall.pagerduty.escalation_policy`, read with the REST API token its
`api_token_env` names), found in Slack by e-mail; the fixed group of `slack.oncall` when
the service names no policy, the token is unset, PagerDuty cannot be asked, or nobody on
call has a Slack account with that e-mail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot import receipts
from bot.config import Config, Oncall
from bot.domain.errors import DeliveryFailed
from bot.domain.messages import OncallLine, PagerAlert, PagerChange, TemplateLine
from bot.ports import Clock, OncallSchedule, PagerAction, PagerEvent, SlackPeople, SlackSender
from bot.render import Renderer
from bot.services.release_views import ReleaseView, release_views
from bot.store.db import Database

log = logging.getLogger(__name__)

OPSGENIE_EU = "opsgenie_eu"
"""The pager of Opsgenie accounts in the EU region (api.eu.opsgenie.com)."""


def pager_targets(oncall: Oncall) -> list[tuple[str, str]]:
    """(pager, environment variable holding its key) for each configured provider; an EU
    Opsgenie account is paged through its own region's pager."""
    targets = []
    if oncall.pagerduty is not None:
        targets.append(("pagerduty", oncall.pagerduty.routing_key_env))
    if oncall.opsgenie is not None:
        pager = OPSGENIE_EU if oncall.opsgenie.region == "eu" else "opsgenie"
        targets.append((pager, oncall.opsgenie.api_key_env))
    return targets


@dataclass(frozen=True)
class OnCallNow:
    """Whom to mention: Slack principals, and where they came from (pagerduty | group)."""

    mentions: list[str]
    source: str


class OncallFinder:
    """Who is on call now for a service, as Slack principals (module doc)."""

    def __init__(
        self,
        *,
        schedule: OncallSchedule | None,
        people: SlackPeople | None,
        secrets: Callable[[str], str | None],
    ) -> None:
        self._schedule = schedule
        self._people = people
        self._secrets = secrets

    async def mentions(self, oncall: Oncall | None, fallback: list[str]) -> OnCallNow:
        """The people on call now in PagerDuty, or `fallback` (the fixed group)."""
        group = OnCallNow(list(fallback), "group")
        pagerduty = oncall.pagerduty if oncall is not None else None
        if pagerduty is None or pagerduty.escalation_policy is None:
            return group
        if self._schedule is None or self._people is None:
            return group
        token = self._secrets(pagerduty.api_token_env)
        if not token:
            log.warning("%s is not set: mentioning the on-call group", pagerduty.api_token_env)
            return group
        try:
            emails = await self._schedule.emails(
                escalation_policy=pagerduty.escalation_policy, token=token
            )
        except DeliveryFailed as failure:
            log.warning("PagerDuty on-calls unavailable, mentioning the group: %s", failure)
            return group
        found = await self._slack_users(emails)
        if not found:
            log.warning(
                "nobody on call for %s has a Slack account by e-mail; mentioning the group",
                pagerduty.escalation_policy,
            )
            return group
        return OnCallNow(found, "pagerduty")

    async def _slack_users(self, emails: list[str]) -> list[str]:
        assert self._people is not None
        found: list[str] = []
        for email in emails:
            try:
                user = await self._people.user_id_by_email(email)
            except DeliveryFailed as failure:
                log.warning("could not look up an on-call person in Slack: %s", failure)
                continue
            if user and user not in found:
                found.append(user)
        return found


Handler = Callable[[Any, Any], Awaitable[None]]


class OncallLines:
    """Sends `OncallLine` rows: the thread line, with on-call as it is when it is sent."""

    def __init__(
        self,
        *,
        db: Database,
        config: Config,
        finder: OncallFinder,
        slack: SlackSender,
        renderer: Renderer,
        clock: Clock,
    ) -> None:
        self._db = db
        self._config = config
        self._finder = finder
        self._slack = receipts.slack_sender(slack)
        self._renderer = renderer
        self._clock = clock

    def handlers(self) -> dict[str, Handler]:
        """The outbox kind and its sender."""
        return {OncallLine.KIND: self._send}

    async def _send(self, row: Any, _batch: object) -> None:
        line = OncallLine.from_payload(row.payload)
        view = await asyncio.to_thread(self._view, line.deployment_id)
        if view is None or view.channel is None or view.ts is None:
            raise DeliveryFailed(
                f"deployment {line.deployment_id} has no release message to reply to",
                retryable=False,
            )
        field = str(line.fields.get("oncall_field") or "oncall")
        fallback = [str(p) for p in line.fields.get(field) or []]
        service = self._config.services.get(view.service)
        now = await self._finder.mentions(service.oncall if service else None, fallback)
        change = {**row.payload, field: now.mentions, "oncall_source": now.source}
        text = self._renderer.thread_reply(view, change)
        # Receipted as the thread line it is (the evidence pack lists every thread line).
        with receipts.collect() as answers:
            await self._slack.post_message(channel=view.channel, text=text, thread_ts=view.ts)
        as_line = replace(row, kind=TemplateLine.KIND)
        await receipts.record(self._db, as_line, answers, now=self._clock.now())

    def _view(self, deployment_id: int) -> ReleaseView | None:
        with self._db.read() as session:
            return release_views(session, [deployment_id], config=self._config).get(deployment_id)


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
