"""Delivery receipts: what a platform answered when the outbox worker sent a side effect.

The worker only knows that a row was sent; the receipt says what the other side gave back
(the Slack `ts` of a post or an edit, a code host's answer to a protection-rule callback, a
pager's dedup key, a dispatched run), so an auditor sees that a page or a callback really
went out, not only that it was intended. Each sent row that produced an answer becomes one
audit record:

    action   "<outbox kind>.delivered"         e.g. "pager.alert.delivered"
    subject  "receipt:deployment:<id>"         or "receipt:outbox:<row id>" without a deployment
    details  {"outbox_id", "kind", "attempt", "receipts": [{"platform", ...}, ...]}

Receipts carry no secret: never a token, routing key or signature, only what identifies the
delivery on the platform's side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.services import audit

DELIVERED = ".delivered"
SUBJECT_PREFIX = "receipt:"


def subject_for(deployment_id: int | None, outbox_id: int) -> str:
    """The audit subject of a receipt: its deployment's, or the outbox row's."""
    if deployment_id is not None:
        return f"{SUBJECT_PREFIX}deployment:{deployment_id}"
    return f"{SUBJECT_PREFIX}outbox:{outbox_id}"


def record(
    session: Session,
    *,
    now: datetime,
    outbox_id: int,
    kind: str,
    attempt: int,
    payload: Mapping[str, Any],
    receipts: Sequence[Mapping[str, Any]],
) -> None:
    """Audit what the platforms answered for one sent outbox row."""
    raw = payload.get("deployment_id")
    deployment_id = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else None
    audit.append(
        session,
        at=now,
        actor="releasebot",
        action=f"{kind}{DELIVERED}",
        subject=subject_for(deployment_id, outbox_id),
        details={
            "outbox_id": outbox_id,
            "kind": kind,
            "attempt": attempt,
            "receipts": [dict(receipt) for receipt in receipts],
        },
    )
