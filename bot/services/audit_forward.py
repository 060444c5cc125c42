"""The audit forwarder's queue: which records are still to reach the SIEM's webhook.

    enqueue_new(session, now=now)   # the `audit.forward` job, every few seconds

Each call queues `AuditForward` outbox rows for the records appended since the last row
queued (at most `BATCH` records a row, `ROWS_PER_CALL` rows a call, so a long backlog is
spread over several calls), starting from the first record of the chain the first time.
The cursor is the newest row's `upto_seq`, so nothing else is stored; a record is queued
exactly once, and the outbox retries a failed send until the receiver takes it. Forwarding
itself appends no audit record, so forwarded records never bring more records to forward.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.domain.forwarding import KEY, AuditForward
from bot.services import audit_export, outbox
from bot.store import advisory
from bot.store import statements as sql
from bot.store.tables import OutboxMessage

BATCH = 500
ROWS_PER_CALL = 20


def forwarded_upto(session: Session) -> int:
    """The last sequence number already queued for forwarding (0: none yet)."""
    payload = session.exec(
        select(OutboxMessage.payload)
        .where(OutboxMessage.key == KEY)
        .where(OutboxMessage.kind == AuditForward.KIND)
        .order_by(col(OutboxMessage.id).desc())
        .limit(1)
    ).first()
    return AuditForward.from_payload(dict(payload)).upto_seq if payload else 0


def enqueue_new(session: Session, *, now: datetime) -> int:
    """Queue the records appended since the last call; returns how many rows it queued."""
    conn = session.connection()
    advisory.hold(conn, advisory.AUDIT_FORWARD)  # one replica queues at a time
    head = conn.execute(sql.AUDIT_CHAIN_HEAD).first()
    upto = head.seq if head is not None else 0
    after = forwarded_upto(session)
    rows: list[AuditForward] = []
    while after < upto and len(rows) < ROWS_PER_CALL:
        last = min(after + BATCH, upto)
        rows.append(AuditForward(after_seq=after, upto_seq=last))
        after = last
    if rows:
        outbox.enqueue_many(session, rows, now=now)
    return len(rows)


def body_of(session: Session, message: AuditForward) -> bytes:
    """The records a row carries, as JSON Lines in the export's shape (UTF-8)."""
    found = audit_export.rows(
        session, after_seq=message.after_seq, limit=message.upto_seq - message.after_seq
    )
    lines: list[Any] = [
        json.dumps(audit_export.record(row), ensure_ascii=False) + "\n"
        for row in found
        if row.seq <= message.upto_seq
    ]
    return "".join(lines).encode("utf-8")
