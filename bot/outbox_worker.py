"""The outbox worker: sends what the services queued, in order per deployment, with retries.

A row is leased (claimed) before it is sent, so several replicas can share one database;
on shutdown (`stop`) claimed rows not yet started, or cut short, go back to pending at once.
429s wait for Retry-After, 5xx and network errors back off exponentially with jitter, and a
row is given up on (status dead, shown in /readyz and /metrics) only after a permanent error
or the retry horizon. A crash between commit and send leaves the row pending, so it is sent
on the next start; a release message that already has a stored ts is edited, never re-posted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any

from sqlmodel import Session

from bot import receipts
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
    thread_reply_from_payload,
)
from bot.logs import log_context
from bot.metrics import Metrics
from bot.paging import pager_event, pager_targets
from bot.ports import (
    Clock,
    Comparison,
    Deployer,
    DeploymentLookup,
    DeployRequest,
    Pager,
    ScmClient,
    SlackSender,
)
from bot.render import Renderer
from bot.services import assessment, outbox, pipeline
from bot.services.ingest import apply_resolved
from bot.services.outbox import (
    DEPLOY,
    DIGEST,
    PAGER,
    PAGER_CHANGE,
    SLACK_ANNOUNCE,
    SLACK_MESSAGE,
    SLACK_THREAD,
)
from bot.services.release_views import ReleaseView, release_views, save_message
from bot.store.db import Database

log = logging.getLogger(__name__)

HORIZON = timedelta(hours=24)
# The release message shows "assessing..." until the compare API answers; after this many
# failed attempts it shows the commit list as unavailable instead of waiting longer.
ASSESS_ATTEMPTS = 4
# Kinds whose handler shows a deployment's release view (read once per batch for all rows).
NEEDS_VIEW = frozenset({SLACK_MESSAGE, SLACK_THREAD, SLACK_ANNOUNCE, PAGER, PAGER_CHANGE})
# Side effects that must not happen twice: settled one by one as soon as they are sent.
# (A release message is an edit of a stored ts and a thread line is cheap to repeat: those
# are settled together after the batch.)
SETTLED_AT_ONCE = frozenset(
    {DEPLOY, PAGER, PAGER_CHANGE, SLACK_ANNOUNCE, DIGEST, DirectMessage.KIND}
)


@dataclass
class _Batch:
    """What one drain round read for the rows it claimed."""

    views: dict[int, ReleaseView]
    newest_message: dict[str, int]  # key -> id of its newest pending release-message row
    sent: list[int] = field(default_factory=list)
    untried: list[int] = field(default_factory=list)  # not started: key failed, or stopping


_Handler = Callable[[outbox.Claimed, _Batch], Awaitable[None]]


class OutboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        config: Config,
        slack: SlackSender,
        renderer: Renderer,
        metrics: Metrics,
        scm: Mapping[str, ScmClient] | None = None,
        lookups: Mapping[str, DeploymentLookup] | None = None,
        deployers: Mapping[str, Deployer] | None = None,
        pagers: Mapping[str, Pager] | None = None,
        secrets: Callable[[str], str | None] | None = None,
        public_url: str = "",
        rng: Callable[[], float] = random.random,
        batch: int = 100,
        horizon: timedelta = HORIZON,
        min_interval: float = 0.15,
        more: Mapping[str, _Handler] | None = None,  # further kinds: checkpoints, audit.forward
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._slack = receipts.slack_sender(slack)
        self._renderer = renderer
        self._metrics = metrics
        self._scm = scm or {}
        self._lookups = lookups or {}
        self._deployers = receipts.deployers(deployers)
        self._pagers = receipts.pagers(pagers)
        self._secrets = secrets or (lambda _name: None)
        self._unset_warned: set[str] = set()  # secret variables already reported missing
        self._public_url = public_url.rstrip("/")
        self._rng = rng
        self._batch = batch
        self._horizon = horizon
        self._min_interval = min_interval
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._by_kind = {**self._handlers(), **(more or {})}

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; the sends in flight finish and `run` returns."""
        self._stopping = True
        self._wakeup.set()

    async def run(self, *, poll_seconds: float = 5.0) -> None:
        """Send a batch whenever woken (a commit queued something) or every `poll_seconds`.

        During a burst every commit wakes the worker; a batch then starts at most every
        `min_interval` seconds, so rows pile up a little and one batch claims them together
        (and sends only the newest edit of each release message) instead of one small
        batch per commit competing with the commits themselves for the CPU. A full batch
        means a backlog: the next one starts as soon as that interval allows.
        """
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            claimed = 0
            try:
                claimed = await self._send_batch()
            except Exception:  # keep the worker alive; the rows stay pending
                log.exception("outbox batch failed; will try again")
            if claimed < self._batch:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=poll_seconds)
                except TimeoutError:
                    pass
                self._wakeup.clear()
            pause = self._min_interval - (loop.time() - started)
            if pause > 0 and not self._stopping:
                await asyncio.sleep(pause)

    async def drain(self) -> int:
        """Send every row that is due now; returns how many rows were settled."""
        settled = 0
        while not self._stopping and (claimed := await self._send_batch()):
            settled += claimed
        return settled

    async def _send_batch(self) -> int:
        """Claim a batch of due rows, send them (in order per key), settle them; returns how
        many rows were claimed."""
        claimed = await asyncio.to_thread(self._db.write, self._claim)
        if not claimed:
            return 0
        batch = _Batch(views={}, newest_message={})
        try:
            batch = await asyncio.to_thread(self._prepare, claimed)
            by_key: dict[str, list[outbox.Claimed]] = defaultdict(list)
            for row in claimed:
                by_key[row.key].append(row)
            await asyncio.gather(*(self._send_in_order(rows, batch) for rows in by_key.values()))
        except asyncio.CancelledError:  # shutdown outlasted its grace: give back the rest
            batch.untried = [row.id for row in claimed if row.id not in batch.sent]
            await asyncio.to_thread(self._db.write, self._settle(batch))
            raise
        if batch.sent or batch.untried:
            await asyncio.to_thread(self._db.write, self._settle(batch))
        return len(claimed)

    def _claim(self, session: Session) -> list[outbox.Claimed]:
        return outbox.claim_due(session, now=self._clock.now(), limit=self._batch)

    def _prepare(self, claimed: list[outbox.Claimed]) -> _Batch:
        """Read, for all claimed rows at once, the release views and the newest pending
        message edit of each key. Read after the claim, so every view is at least as new
        as the rows that asked for it."""
        deployment_ids = {int(r.payload["deployment_id"]) for r in claimed if r.kind in NEEDS_VIEW}
        message_keys = sorted({r.key for r in claimed if r.kind == SLACK_MESSAGE})
        with self._db.read() as session:
            return _Batch(
                views=release_views(session, deployment_ids, config=self._config),
                newest_message=outbox.later_message_updates(session, keys=message_keys),
            )

    async def _send_in_order(self, rows: list[outbox.Claimed], batch: _Batch) -> None:
        for index, row in enumerate(rows):
            if self._stopping:
                batch.untried.extend(r.id for r in rows[index:])
                return
            with log_context(**row.log_ids()):
                sent = await self._send(row, batch)
            if not sent:
                batch.untried.extend(r.id for r in rows[index + 1 :])
                return

    async def _send(self, row: outbox.Claimed, batch: _Batch) -> bool:
        """Send one row; False when it failed (it is settled for a retry or given up on at
        once, and the later rows of its key wait). Sent rows are marked after the batch."""
        try:
            await self._dispatch(row, batch)
        except DeliveryFailed as exc:
            self._metrics.outbox_failures.labels(row.kind, str(exc.retryable).lower()).inc()
            if row.kind.startswith("slack."):
                self._metrics.slack_api_errors.labels(_error_code(exc.reason)).inc()
            await self._settle_failure(row, exc)
            return False
        except Exception as exc:
            log.exception("outbox row %s (%s) failed unexpectedly", row.id, row.kind)
            self._metrics.outbox_failures.labels(row.kind, "true").inc()
            await self._settle_failure(
                row, DeliveryFailed(f"{type(exc).__name__}: {exc}", retryable=True)
            )
            return False
        if row.kind in SETTLED_AT_ONCE:
            # Not safe to send twice (a pipeline moved, a page): marked sent now, not after
            # the batch, so a crash or an expired lease later in the batch cannot resend it.
            now = self._clock.now()
            await asyncio.to_thread(
                self._db.write, partial(outbox.mark_sent, row_id=row.id, now=now)
            )
        else:
            batch.sent.append(row.id)
        self._metrics.outbox_sent.labels(row.kind).inc()
        return True

    async def _settle_failure(self, row: outbox.Claimed, exc: DeliveryFailed) -> None:
        now = self._clock.now()
        if not exc.retryable or now - row.created_at > self._horizon:
            log.error("giving up on outbox row %s (%s): %s", row.id, row.kind, exc.reason)

            def give_up(session: Session) -> None:
                outbox.mark_dead(session, row_id=row.id, error=exc.reason)
                if row.kind == DEPLOY:
                    pipeline.record_failure(session, now=now, payload=row.payload, error=exc.reason)

            await asyncio.to_thread(self._db.write, give_up)
            return
        delay = outbox.retry_delay(row.attempts, exc.retry_after, jitter=self._rng())
        log.warning(
            "outbox row %s (%s) failed, retry in %.1fs: %s", row.id, row.kind, delay, exc.reason
        )
        next_at = now + timedelta(seconds=delay)
        await asyncio.to_thread(
            self._db.write,
            lambda s: outbox.mark_retry(
                s, row_id=row.id, next_attempt_at=next_at, error=exc.reason
            ),
        )

    def _settle(self, batch: _Batch) -> Callable[[Session], None]:
        now = self._clock.now()
        return partial(outbox.settle, sent=batch.sent, untried=batch.untried, now=now)

    def _handlers(self) -> dict[str, _Handler]:
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

    async def _dispatch(self, row: outbox.Claimed, batch: _Batch) -> None:
        handler = self._by_kind.get(row.kind)
        if handler is None:
            raise DeliveryFailed(f"unknown outbox kind {row.kind!r}", retryable=False)
        with receipts.collect() as answers:
            await handler(row, batch)
        await receipts.record(self._db, row, answers, now=self._clock.now())

    async def _digest(self, row: outbox.Claimed, batch: _Batch) -> None:
        digest = Digest.from_payload(row.payload)
        await self._slack.post_message(
            channel=digest.channel, text=digest.text, blocks=digest.blocks
        )

    async def _direct_message(self, row: outbox.Claimed, batch: _Batch) -> None:
        message = DirectMessage.from_payload(row.payload)
        await self._slack.post_message(channel=message.user_id, text=message.text)

    @staticmethod
    def _view(deployment_id: int, batch: _Batch) -> ReleaseView:
        view = batch.views.get(deployment_id)
        if view is None:
            raise DeliveryFailed(f"deployment {deployment_id} does not exist", retryable=False)
        return view

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        with self._db.read() as session:
            return fn(session)

    async def _release_message(self, row: outbox.Claimed, batch: _Batch) -> None:
        message = ReleaseMessageUpdate.from_payload(row.payload)
        view = self._view(message.deployment_id, batch)
        if view.ts is not None and batch.newest_message.get(row.key, 0) > row.id:
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
        posted = await self._slack.post_message(channel=channel, text=text, blocks=blocks)
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: save_message(
                s, deployment_id=view.deployment_id, channel=posted.channel, ts=posted.ts, now=now
            ),
        )
        # The rest of the batch (thread lines, later edits) goes to the posted message.
        batch.views[view.deployment_id] = replace(view, channel=posted.channel, ts=posted.ts)

    async def _thread_reply(self, row: outbox.Claimed, batch: _Batch) -> None:
        line = thread_reply_from_payload(row.payload)
        view = self._view(line.deployment_id, batch)
        if view.channel is None or view.ts is None:
            raise DeliveryFailed(
                f"deployment {view.deployment_id} has no release message to reply to",
                retryable=False,
            )
        text = self._renderer.thread_reply(view, row.payload)
        await self._slack.post_message(channel=view.channel, text=text, thread_ts=view.ts)

    async def _assess(self, row: outbox.Claimed, batch: _Batch) -> None:
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
        await asyncio.to_thread(
            self._db.write,
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

    async def _announce(self, row: outbox.Claimed, batch: _Batch) -> None:
        """A line in the channel itself, for what everyone should see (break-glass)."""
        announcement = Announcement.from_payload(row.payload)
        view = self._view(announcement.deployment_id, batch)
        channel = view.channel or self._config.channel_for(view.service)
        text = self._renderer.thread_reply(view, row.payload)
        await self._slack.post_message(channel=channel, text=text)

    async def _page_alert(self, row: outbox.Claimed, batch: _Batch) -> None:
        await self._page(PagerAlert.from_payload(row.payload), batch)

    async def _page_change(self, row: outbox.Claimed, batch: _Batch) -> None:
        await self._page(PagerChange.from_payload(row.payload), batch)

    async def _page(self, page: PagerAlert | PagerChange, batch: _Batch) -> None:
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

    async def _deploy(self, row: outbox.Claimed, batch: _Batch) -> None:
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
        await asyncio.to_thread(
            self._db.write,
            lambda s: pipeline.record_result(s, now=now, payload=row.payload, result=result),
        )
        self.wake()

    async def _resolve_sha(self, row: outbox.Claimed, batch: _Batch) -> None:
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
        await asyncio.to_thread(
            self._db.write,
            lambda s: apply_resolved(
                s, now=now, config=self._config, event=event, waiting_id=waiting
            ),
        )
        self.wake()


def _error_code(reason: str) -> str:
    return reason.rsplit(": ", 1)[-1][:64] if ": " in reason else "error"
