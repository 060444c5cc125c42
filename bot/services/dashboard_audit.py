"""The dashboard's audit log page: records newest first, a page at a time, each linked to
the deployment it is about, and whether the hash chain still verifies."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from bot.services import audit
from bot.store.tables import AuditEvent, Gate

DETAIL_VALUE_MAX = 160


@dataclass(frozen=True)
class ChainStatus:
    verified: bool
    records_checked: int
    broken_seq: int | None
    reason: str | None


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: list[tuple[str, str]]
    hash: str
    deployment_id: int | None  # the deployment the subject is about, for a link


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRow]  # newest first
    chain: ChainStatus
    total: int
    older_than: int | None  # `before_seq` for the next (older) page, None on the last
    newer_than: int | None  # `before_seq` for the previous (newer) page, None on the first


def chain_status(session: Session) -> ChainStatus:
    checked, broken = audit.verify_chain(session)
    return ChainStatus(
        verified=broken is None,
        records_checked=checked,
        broken_seq=broken.seq if broken is not None else None,
        reason=broken.reason if broken is not None else None,
    )


def audit_page(session: Session, *, limit: int = 50, before_seq: int | None = None) -> AuditPage:
    """Records newest first, `limit` per page, older than `before_seq` when given."""
    limit = max(1, min(limit, 500))
    query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(limit + 1)
    if before_seq is not None:
        query = query.where(col(AuditEvent.seq) < before_seq)
    events = list(session.exec(query).all())
    more = len(events) > limit
    events = events[:limit]
    newer_than: int | None = None
    if before_seq is not None and events:
        newer = session.exec(
            select(AuditEvent.seq)
            .where(col(AuditEvent.seq) > events[0].seq)
            .order_by(col(AuditEvent.seq))
            .limit(limit)
        ).all()
        newer_than = (max(newer) + 1) if newer else None
    gate_ids = {
        int(rest)
        for e in events
        for kind, _, rest in [e.subject.partition(":")]
        if kind == "gate" and rest.isdigit()
    }
    gate_deployments: dict[int, int] = {}
    if gate_ids:
        for gate_id, deployment_id in session.exec(
            select(Gate.id, Gate.deployment_id).where(col(Gate.id).in_(sorted(gate_ids)))
        ).all():
            if gate_id is not None:
                gate_deployments[gate_id] = deployment_id
    return AuditPage(
        records=[
            AuditRow(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                subject=e.subject,
                details=summarise(e.details),
                hash=e.hash,
                deployment_id=_subject_deployment(e.subject, gate_deployments),
            )
            for e in events
        ],
        chain=chain_status(session),
        total=audit.count(session),
        older_than=events[-1].seq if more and events else None,
        newer_than=newer_than,
    )


def _subject_deployment(subject: str, gates: Mapping[int, int]) -> int | None:
    kind, _, rest = subject.partition(":")
    if not rest.isdigit():
        return None
    if kind == "deployment":
        return int(rest)
    if kind == "gate":
        return gates.get(int(rest))
    return None


def summarise(details: str, *, limit: int = DETAIL_VALUE_MAX) -> list[tuple[str, str]]:
    """An audit record's details as (key, one-line value) pairs, long values cut short."""
    try:
        data = json.loads(details)
    except (json.JSONDecodeError, TypeError):
        return [("details", _cut(str(details), limit))]
    if not isinstance(data, dict):
        return [("details", _cut(_compact(data), limit))]
    return [(str(key), _cut(_compact(data[key]), limit)) for key in sorted(data)]


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


# --- a deployment page's timeline ------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: str  # as the chain wrote it (UTC ISO 8601 with a Z)
    actor: str
    action: str
    subject: str
    details: list[tuple[str, str]]  # (key, short value), in key order


def timeline(session: Session, subjects: Sequence[str]) -> list[TimelineEntry]:
    events = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.subject).in_(list(subjects)))
        .order_by(col(AuditEvent.seq))
    ).all()
    return [_entry(event) for event in events]


def _entry(event: AuditEvent) -> TimelineEntry:
    return TimelineEntry(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        details=summarise(event.details),
    )
