"""The outbox worker's delivery receipts: the platforms' answers, caught at the ports.

The worker's Slack sender, pagers and deployers are wrapped once (`slack_sender`,
`pagers`, `deployers`); every answer they give while a row is being sent is noted in the
row's collection (`collect`, one per row, kept in a context variable so rows of different
keys sent at the same time never mix), and `record` audits them as `<kind>.delivered`
(`bot/services/receipts.py`). A receipt never holds a secret.

    slack     {"platform": "slack", "method": "chat.postMessage", "channel", "ts", "thread_ts"}
              (with "adopted": true when a post in doubt was found in Slack, not sent again)
              {"platform": "slack", "method": "chat.update", "channel", "ts"}
    pagers    {"platform": "pagerduty", "action", "dedup_key", "answer"}
    deployers {"platform": "github_protection", "action", "detail", "url", "run_id"}
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

from sqlmodel import Session

from bot.ports import (
    Deployer,
    DeployRequest,
    DeployResult,
    Pager,
    PagerEvent,
    PostedMessage,
    SlackSender,
)
from bot.services import receipts as stored
from bot.services.outbox import Claimed
from bot.store.db import Database

log = logging.getLogger(__name__)

Receipt = dict[str, Any]
_CURRENT: ContextVar[list[Receipt] | None] = ContextVar("delivery_receipts", default=None)
_RUN_ID = re.compile(r"\(run (\d+)\)|/runs/(\d+)|/pipelines/(\d+)|/job/[^/]+/(\d+)|/-/jobs/(\d+)")
# Kinds whose sending is not itself a side effect worth a receipt: forwarding the audit
# trail to a SIEM would otherwise audit every forward, and forward that record in turn.
UNRECORDED = frozenset({"audit.forward"})


@contextmanager
def collect() -> Iterator[list[Receipt]]:
    """The receipts noted while this block runs (in this task only)."""
    found: list[Receipt] = []
    token = _CURRENT.set(found)
    try:
        yield found
    finally:
        _CURRENT.reset(token)


def note(receipt: Receipt) -> None:
    """Add a platform's answer to the row being sent (outside a row: nothing to add to)."""
    current = _CURRENT.get()
    if current is not None:
        current.append(receipt)


def audit(session: Session, row: Claimed, found: list[Receipt], *, now: Any) -> None:
    """Audit the receipts of a sent row, inside the caller's transaction (the one that marks
    it sent, `bot.outbox_worker.writes`)."""
    if found and row.kind not in UNRECORDED:
        stored.record(
            session,
            now=now,
            outbox_id=row.id,
            kind=row.kind,
            attempt=row.attempts + 1,
            payload=row.payload,
            receipts=list(found),
        )


async def record(db: Database, row: Claimed, found: list[Receipt], *, now: Any) -> None:
    """Audit the receipts of one sent row. A failure here is logged, never raised: the side
    effect has happened, and sending it again to get a receipt would do it twice."""
    if not found or row.kind in UNRECORDED:
        return
    write = partial(audit, row=row, found=found, now=now)
    try:
        await asyncio.to_thread(db.write, write)
    except Exception:
        log.exception("could not record the delivery receipt of outbox row %s", row.id)


def run_id(result: DeployResult) -> str | None:
    """The run, pipeline or build a deployer started, as its detail or link names it."""
    for text in (result.detail, result.url or ""):
        found = _RUN_ID.search(text)
        if found:
            return next(group for group in found.groups() if group)
    return None


class _ReceiptingSlack:
    def __init__(self, inner: SlackSender) -> None:
        self._inner = inner

    async def post_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PostedMessage:
        posted = await self._inner.post_message(
            channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, metadata=metadata
        )
        note(
            {
                "platform": "slack",
                "method": "chat.postMessage",
                "channel": posted.channel,
                "ts": posted.ts,
                "thread_ts": thread_ts,
            }
        )
        return posted

    async def update_message(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._inner.update_message(channel=channel, ts=ts, text=text, blocks=blocks)
        note({"platform": "slack", "method": "chat.update", "channel": channel, "ts": ts})

    async def find_message(
        self,
        *,
        channel: str,
        oldest: float,
        metadata: dict[str, Any],
        thread_ts: str | None = None,
    ) -> PostedMessage | None:
        found = await self._inner.find_message(
            channel=channel, oldest=oldest, metadata=metadata, thread_ts=thread_ts
        )
        if found is not None:  # an earlier attempt's post, adopted rather than sent again
            note(
                {
                    "platform": "slack",
                    "method": "chat.postMessage",
                    "channel": found.channel,
                    "ts": found.ts,
                    "thread_ts": thread_ts,
                    "adopted": True,
                }
            )
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReceiptingPager:
    def __init__(self, provider: str, inner: Pager) -> None:
        self._provider = provider
        self._inner = inner

    async def send(self, event: PagerEvent) -> str | None:
        answer = await self._inner.send(event)
        note(
            {
                "platform": self._provider,
                "action": event.action,
                "dedup_key": answer or event.dedup_key,
                "answer": answer,
            }
        )
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReceiptingDeployer:
    def __init__(self, kind: str, inner: Deployer) -> None:
        self._kind = kind
        self._inner = inner

    async def execute(self, request: DeployRequest) -> DeployResult:
        result = await self._inner.execute(request)
        note(
            {
                "platform": self._kind,
                "action": request.action,
                "request_id": request.request_id,
                "detail": result.detail,
                "url": result.url,
                "run_id": run_id(result),
            }
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def slack_sender(inner: SlackSender) -> SlackSender:
    """The worker's Slack sender, noting the ts of every post and edit."""
    return _ReceiptingSlack(inner)


def pagers(found: Mapping[str, Pager] | None) -> dict[str, Pager]:
    """The worker's pagers, noting each provider's dedup key."""
    return {name: _ReceiptingPager(name, pager) for name, pager in (found or {}).items()}


def deployers(found: Mapping[str, Deployer] | None) -> dict[str, Deployer]:
    """The worker's deployers, noting each answer (callback result, run started)."""
    return {kind: _ReceiptingDeployer(kind, d) for kind, d in (found or {}).items()}
