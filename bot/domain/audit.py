"""The tamper-evident audit chain: pure hashing and verification.

hash = sha256(prev_hash + canonical JSON of seq, at, actor, action, subject, details)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_at(at: datetime) -> str:
    """UTC ISO 8601 with microseconds and a Z, the form that is hashed and exported."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    *,
    prev_hash: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": dict(details),
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def find_break(records: Iterable[AuditRecord]) -> ChainBreak | None:
    """The first record whose sequence, link or hash does not hold, or None."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for record in records:
        if record.seq != expected_seq:
            return ChainBreak(record.seq, f"expected sequence {expected_seq}, found {record.seq}")
        if record.prev_hash != expected_prev:
            return ChainBreak(record.seq, "prev_hash does not match the previous record's hash")
        computed = record_hash(
            prev_hash=record.prev_hash,
            seq=record.seq,
            at=record.at,
            actor=record.actor,
            action=record.action,
            subject=record.subject,
            details=record.details,
        )
        if computed != record.hash:
            return ChainBreak(record.seq, "hash does not match the record's contents")
        expected_prev = record.hash
        expected_seq += 1
    return None
