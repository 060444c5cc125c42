"""How each kind of outbox row is sent: one handler per kind, over the worker's ports.

Posts to Slack are made at most once even when an earlier attempt's outcome is unknown (a
crash after sending, a lost answer, the database failing before the ts was recorded): each
post carries message metadata naming what it is (`metadata`), and a row whose earlier
attempt is in doubt first looks for that post in the channel (or the thread) since a little
before that attempt, and adopts it when found instead of posting again.

    release message  {"event_type": "releasebot_release",
                      "event_payload": {"deployment_id": 7, "outbox_id": 12}}
    thread line      "releasebot_thread_line"  {"deployment_id", "outbox_id"}
    announcement     "releasebot_announcement" {"deployment_id", "outbox_id"}
    digest           "releasebot_digest"       {"outbox_id"}
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.domain.ingest import resolved_event
from bot.domain.messages import (
    Announcement,
    Assess,
    DeployerCall,
    Digest,
    DirectMessage,
    PagerAlert,
    PagerChange,
    ReleaseMessageUpdate,
    ResolveSha,
    TemplateLine,
    lines_of,
    thread_reply_from_payload,
)
from bot.outbox_worker.writes import LaneWrites
from bot.paging import pager_event, pager_targets
from bot.ports import (
    Clock,
    Comparison,
    Deployer,
    DeploymentLookup,
    DeployRequest,
    Pager,
    PostedMessage,
    ScmClient,
    SlackSender,
)
from bot.render import Renderer
from bot.services import assessment, outbox, pipeline
from bot.services.ingest import apply_resolved
from bot.services.release_views import ReleaseView, release_views, save_message
from bot.store.db import Database

log = logging.getLogger(__name__)

# The release message shows "assessing..." until the compare API answers; after this many
# failed attempts it shows the commit list as unavailable instead of waiting longer.
ASSESS_ATTEMPTS = 4
# Kinds whose handler shows a deployment's release view (read once per claim for all rows).
NEEDS_VIEW = frozenset(
    {
        outbox.SLACK_MESSAGE,
        outbox.SLACK_THREAD,
        outbox.SLACK_ANNOUNCE,
        outbox.PAGER,
        outbox.PAGER_CHANGE,
    }
)
RELEASE_EVENT = "releasebot_release"
LINE_EVENT = "releasebot_thread_line"
ANNOUNCE_EVENT = "releasebot_announcement"
DIGEST_EVENT = "releasebot_digest"
# How far before an attempt in doubt its post is looked for: Slack's clock and ours differ.
LOOKBACK = timedelta(minutes=5)


def metadata(event_type: str, **payload: Any) -> dict[str, Any]:
    """Slack message metadata naming what a post is, for finding it again."""
    return {"event_type": event_type, "event_payload": payload}


@dataclass
class Batch:
    """What one claim read for the rows it took, shared by the messages sent from it."""

    views: dict[int, ReleaseView] = field(default_factory=dict)
    newest_message: dict[str, int] = field(default_factory=dict)  # key -> newest pending edit
    in_doubt: dict[int, datetime] = field(default_factory=dict)  # row id -> first attempt


Handler = Callable[[outbox.Claimed, Batch], Awaitable[None]]


def superseded(row: outbox.Claimed, batch: Batch) -> bool:
    """Whether `row` is an edit of a posted release message that a later pending edit of the
    same message replaces: it needs no Slack call (the later one renders the newer state)."""
    if row.kind != ReleaseMessageUpdate.KIND:
        return False
    view = batch.views.get(ReleaseMessageUpdate.from_payload(row.payload).deployment_id)
    return (
        view is not None and view.ts is not None and batch.newest_message.get(row.key, 0) > row.id
    )


def read_batch(db: Database, config: Config, claimed: list[outbox.Claimed]) -> Batch:
    """Read, for all claimed rows at once, the release views and the newest pending
    message edit of each key. Read after the claim, so every view is at least as new
    as the rows that asked for it."""
    deployment_ids = {int(r.payload["deployment_id"]) for r in claimed if r.kind in NEEDS_VIEW}
    message_keys = sorted({r.key for r in claimed if r.kind == outbox.SLACK_MESSAGE})
    with db.read() as session:
        return Batch(
            views=release_views(session, deployment_ids, config=config),
            newest_message=outbox.later_message_updates(session, keys=message_keys),
        )


class Sends:
    """The handler of every kind, and the ports they send through."""

    def __init__(
        self,
        *,
        db: Database,
        writes: LaneWrites,
        clock: Clock,
        config: Config,
        slack: SlackSender,
        renderer: Renderer,
        wake: Callable[[], None],
        scm: Mapping[str, ScmClient],
        lookups: Mapping[str, DeploymentLookup],
        deployers: Mapping[str, Deployer],
        pagers: Mapping[str, Pager],
        secrets: Callable[[str], str | None],
        public_url: str,
    ) -> None:
        self._db = db
        self._writes = writes  # joined with the lanes' marks (`writes.py`)
        self._clock = clock
        self._config = config
        self._slack = slack
        self._renderer = renderer
        self.wake = wake
        self._scm = scm
        self._lookups = lookups
        self._deployers = deployers
        self._pagers = pagers
        self._secrets = secrets
        self._unset_warned: set[str] = set()  # secret variables already reported missing
        self._public_url = public_url.rstrip("/")

    def table(self) -> dict[str, Handler]:
        """The handler that sends each kind of row."""
        return {
            ReleaseMessageUpdate.KIND: self._release_message,
            TemplateLine.KIND: self._thread_reply,
            Assess.KIND: self._assess,
            ResolveSha.KIND: self._resolve_sha,
            DeployerCall.KIND: self._deploy,
            Announcement.KIND: self._announce,
            PagerAlert.KIND: self._page_alert,
            PagerChange.KIND: self._page_change,
            Digest.KIND: self._digest,
            DirectMessage.KIND: self._direct_message,
        }

    async def _find(
        self,
        row: outbox.Claimed,
        batch: Batch,
        *,
        channel: str,
        tag: dict[str, Any],
        match: str = "outbox_id",
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        """The post an earlier attempt of `row` may have made, when that attempt is in doubt:
        looked for in Slack by the `match` field of its metadata, since a little before it."""
        since = batch.in_doubt.get(row.id)
        if since is None:
            return None
        wanted = metadata(tag["event_type"], **{match: tag["event_payload"][match]})
        try:
            found = await self._slack.find_message(
                channel=channel,
                oldest=(since - LOOKBACK).timestamp(),
                metadata=wanted,
                thread_ts=thread_ts,
            )
        except DeliveryFailed as failure:
            if failure.retryable:
                raise  # Slack could not be read now: look again on the next attempt
            # Slack will never let us look (a missing history or channel-listing scope, a
            # #name among no channel the bot can see): posting again beats never posting.
            # A #name is read by its id, which the sender learns or lists; a rate limit or
            # 5xx while listing is retryable and waits above like any other.
            log.warning(
                "outbox row %s: could not look for its earlier post (%s); posting it again",
                row.id,
                failure.reason,
            )
            return None
        if found is not None:
            log.warning(
                "outbox row %s was posted before (ts %s); not posting it again", row.id, found.ts
            )
        return found

    async def _post_once(
        self,
        row: outbox.Claimed,
        batch: Batch,
        *,
        channel: str,
        text: str,
        metadata: dict[str, Any],
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> PostedMessage:
        """Post, unless an earlier attempt in doubt already did (then that post is it)."""
        found = await self._find(row, batch, channel=channel, tag=metadata, thread_ts=thread_ts)
        if found is not None:
            return found
        return await self._slack.post_message(
            channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, metadata=metadata
        )

    async def _digest(self, row: outbox.Claimed, batch: Batch) -> None:
        digest = Digest.from_payload(row.payload)
        await self._post_once(
            row,
            batch,
            channel=digest.channel,
            text=digest.text,
            blocks=digest.blocks,
            metadata=metadata(DIGEST_EVENT, outbox_id=row.id),
        )

    async def _direct_message(self, row: outbox.Claimed, batch: Batch) -> None:
        # A direct message's conversation is not readable without more scopes: no lookup.
        message = DirectMessage.from_payload(row.payload)
        await self._slack.post_message(channel=message.user_id, text=message.text)

    @staticmethod
    def _view(deployment_id: int, batch: Batch) -> ReleaseView:
        view = batch.views.get(deployment_id)
        if view is None:
            raise DeliveryFailed(f"deployment {deployment_id} does not exist", retryable=False)
        return view

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        with self._db.read() as session:
            return fn(session)

    async def _release_message(self, row: outbox.Claimed, batch: Batch) -> None:
        """Edit the deployment's release message, or post it (once: a post in doubt is
        looked up by its metadata and adopted, then edited to the current state)."""
        message = ReleaseMessageUpdate.from_payload(row.payload)
        view = self._view(message.deployment_id, batch)
        if superseded(row, batch):
            return  # a later update of the same message renders the same, newer state
        text, blocks = self._renderer.release_message(view)
        if view.channel is not None and view.ts is not None:
            try:
                await self._slack.update_message(
                    channel=view.channel, ts=view.ts, text=text, blocks=blocks
                )
                return
            except DeliveryFailed as exc:
                if "message_not_found" not in exc.reason:
                    raise
                log.warning("release message %s was deleted; posting it again", view.ts)
        channel = view.channel or self._config.channel_for(view.service)
        tag = metadata(RELEASE_EVENT, deployment_id=view.deployment_id, outbox_id=row.id)
        found = await self._find(row, batch, channel=channel, tag=tag, match="deployment_id")
        if found is not None:
            await self._slack.update_message(
                channel=found.channel, ts=found.ts, text=text, blocks=blocks
            )
            posted = found
        else:
            posted = await self._slack.post_message(
                channel=channel, text=text, blocks=blocks, metadata=tag
            )
        now = self._clock.now()
        await self._writes.write(
            lambda s: save_message(
                s, deployment_id=view.deployment_id, channel=posted.channel, ts=posted.ts, now=now
            ),
        )
        # The rest of the batch (thread lines, later edits) goes to the posted message.
        batch.views[view.deployment_id] = replace(view, channel=posted.channel, ts=posted.ts)

    async def _thread_reply(self, row: outbox.Claimed, batch: Batch) -> None:
        line = thread_reply_from_payload(row.payload)
        view = self._view(line.deployment_id, batch)
        if view.channel is None or view.ts is None:
            raise DeliveryFailed(
                f"deployment {view.deployment_id} has no release message to reply to",
                retryable=False,
            )
        lines = lines_of(row.payload)  # lines queued while it waited go out with it
        text = "\n".join(self._renderer.thread_reply(view, line) for line in lines)
        await self._post_once(
            row,
            batch,
            channel=view.channel,
            text=text,
            thread_ts=view.ts,
            metadata=metadata(LINE_EVENT, deployment_id=view.deployment_id, outbox_id=row.id),
        )

    async def _assess(self, row: outbox.Claimed, batch: Batch) -> None:
        deployment_id = Assess.from_payload(row.payload).deployment_id
        plan: assessment.AssessmentPlan | None = await asyncio.to_thread(
            self._read,
            lambda s: assessment.plan(s, config=self._config, deployment_id=deployment_id),
        )
        if plan is None:
            return
        comparison: Comparison | None = None
        unavailable: str | None = None
        client = self._scm.get(plan.provider)
        if plan.fetch and client is None:
            unavailable = f"no {plan.provider} API credentials configured"
        elif plan.fetch and client is not None:
            try:
                comparison = await client.compare(repo=plan.repo, base=plan.base, head=plan.head)
            except DeliveryFailed as exc:
                if exc.retryable and row.attempts + 1 < ASSESS_ATTEMPTS:
                    raise
                unavailable = exc.reason
        now = self._clock.now()
        await self._writes.write(
            lambda s: assessment.record(
                s,
                now=now,
                config=self._config,
                plan=plan,
                comparison=comparison,
                unavailable=unavailable,
            ),
        )
        self.wake()

    async def _announce(self, row: outbox.Claimed, batch: Batch) -> None:
        """A line in the channel itself, for what everyone should see (break-glass)."""
        announcement = Announcement.from_payload(row.payload)
        view = self._view(announcement.deployment_id, batch)
        channel = view.channel or self._config.channel_for(view.service)
        text = self._renderer.thread_reply(view, row.payload)
        tag = metadata(ANNOUNCE_EVENT, deployment_id=view.deployment_id, outbox_id=row.id)
        await self._post_once(row, batch, channel=channel, text=text, metadata=tag)

    async def _page_alert(self, row: outbox.Claimed, batch: Batch) -> None:
        await self._page(PagerAlert.from_payload(row.payload), batch)

    async def _page_change(self, row: outbox.Claimed, batch: Batch) -> None:
        await self._page(PagerChange.from_payload(row.payload), batch)

    async def _page(self, page: PagerAlert | PagerChange, batch: Batch) -> None:
        """Trigger or resolve an on-call alert, or record a change event, for the service's
        PagerDuty (and Opsgenie, when configured); a service without on-call has nothing
        to send."""
        view = self._view(page.deployment_id, batch)
        oncall = self._config.services[view.service].oncall
        if oncall is None:
            log.info("%s has no on-call configured; not paging", view.service)
            return
        for provider, variable in pager_targets(oncall):
            pager = self._pagers.get(provider)
            key = self._secrets(variable)
            if pager is None:
                continue
            if not key and isinstance(page, PagerChange):
                # A change event is a note on the service's timeline: without its key it is
                # skipped (said once), not a dead row per deploy. A page never is.
                if variable not in self._unset_warned:
                    self._unset_warned.add(variable)
                    log.warning("%s is not set: %s change events are skipped", variable, provider)
                continue
            if not key:
                raise DeliveryFailed(
                    f"{variable} is not set: cannot reach {provider}", retryable=False
                )
            await pager.send(
                pager_event(
                    page, view, routing_key=key, public_url=self._public_url, now=self._clock.now()
                )
            )

    async def _deploy(self, row: outbox.Claimed, batch: Batch) -> None:
        """Carry a decision or an action to the real pipeline through its deployer."""
        kind = DeployerCall.from_payload(row.payload).kind
        deployer = self._deployers.get(kind)
        if deployer is None:
            raise DeliveryFailed(
                f"no credentials configured for the {kind} deployer", retryable=False
            )
        request: DeployRequest | None = await asyncio.to_thread(
            self._read,
            lambda s: pipeline.request_for(s, config=self._config, payload=row.payload),
        )
        if request is None:
            raise DeliveryFailed("the deployment is gone", retryable=False)
        result = await deployer.execute(request)
        now = self._clock.now()
        await self._writes.write(
            lambda s: pipeline.record_result(s, now=now, payload=row.payload, result=result),
        )
        self.wake()

    async def _resolve_sha(self, row: outbox.Claimed, batch: Batch) -> None:
        """A webhook that named its commit by a short sha: fetch the full one, then apply."""
        message = ResolveSha.from_payload(row.payload)
        provider = message.provider
        lookup = self._lookups.get(provider)
        if lookup is None:
            raise DeliveryFailed(
                f"no {provider} API credentials configured to look up a deployment's sha",
                retryable=False,
            )
        project, event = message.project, message.event
        if message.environment is not None:  # a job in manual: find its waiting deployment
            found = await lookup.waiting_deployment(project, message.environment, event.sha)
        else:
            found = await lookup.deployment(project, message.deployment_id)
        event, waiting = resolved_event(message, found)
        now = self._clock.now()
        await self._writes.write(
            lambda s: apply_resolved(
                s, now=now, config=self._config, event=event, waiting_id=waiting
            ),
        )
        self.wake()
