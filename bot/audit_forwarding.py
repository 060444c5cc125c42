"""The outbox worker's handler for `audit.forward` rows: read the stretch of the audit chain
a row names (`bot/services/audit_forward.py`) and send it through the forwarder's sink.

Without RELEASEBOT_AUDIT_FORWARD_URL there is no sink, no row is ever queued, and a row
left from an earlier run is given up on with a clear reason rather than retried forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.domain.errors import DeliveryFailed
from bot.domain.forwarding import AuditForward
from bot.services import audit_forward
from bot.services.outbox import Claimed
from bot.store.db import Database


class AuditSink(Protocol):
    """Where forwarded records go (integrations/siem/webhook.py)."""

    async def send(self, body: bytes, *, first_seq: int, last_seq: int) -> int: ...


Handler = Callable[[Claimed, Any], Awaitable[None]]


def handlers(db: Database, sink: AuditSink | None) -> dict[str, Handler]:
    """The worker's table entry for `audit.forward` rows."""

    async def forward(row: Claimed, _batch: Any) -> None:
        if sink is None:
            raise DeliveryFailed(
                "RELEASEBOT_AUDIT_FORWARD_URL is not set: audit records are not forwarded",
                retryable=False,
            )
        message = AuditForward.from_payload(row.payload)

        def read() -> bytes:
            with db.read() as session:
                return audit_forward.body_of(session, message)

        body = await asyncio.to_thread(read)
        if body:
            await sink.send(body, first_seq=message.after_seq + 1, last_seq=message.upto_seq)

    return {AuditForward.KIND: forward}
