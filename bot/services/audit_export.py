"""Streaming the audit trail out, for a SIEM or an auditor: `releasebot audit export`.

    for chunk in export_chunks(session, fmt="jsonl", since=start, until=end):
        sys.stdout.write(chunk)

Records are read in chain order `yield_per` rows at a time (a server-side cursor on
PostgreSQL) as plain rows, never as a list of the whole table, and each is written out as
soon as it is read: a million records export in the same bounded memory as a thousand.

    json    one JSON array, laid out as `json.dumps(records, indent=2)` would lay it out
    jsonl   one record per line (JSON Lines), for log shippers
    csv     the contract's header, then one row per record, `details` as canonical JSON

Every record carries the contract's fields in order: seq, at (UTC ISO 8601), actor, action,
subject, details (JSON), prev_hash, hash, then key_id (the audit key's id, null for an
unkeyed record). `since` is inclusive and `until` exclusive.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from bot.domain.audit import canonical_json, format_at
from bot.store.tables import AuditEvent

FORMATS = ("json", "jsonl", "csv")
# key_id: the audit key a record is hashed under (null: a plain sha256 link).
EXPORT_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
    "key_id",
)
YIELD_PER = 1000
_TABLE: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]


def rows(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    after_seq: int | None = None,
    limit: int | None = None,
    yield_per: int = YIELD_PER,
) -> Iterator[sa.Row[Any]]:
    """The stored records in chain order, read `yield_per` at a time."""
    query = sa.select(*(_TABLE.c[name] for name in EXPORT_FIELDS)).order_by(_TABLE.c.seq)
    if since is not None:
        query = query.where(_TABLE.c.at >= format_at(since))
    if until is not None:
        query = query.where(_TABLE.c.at < format_at(until))
    if after_seq is not None:
        query = query.where(_TABLE.c.seq > after_seq)
    if limit is not None:
        query = query.limit(limit)
    result = session.connection().execution_options(yield_per=yield_per).execute(query)
    try:
        yield from result
    finally:
        result.close()


def record(row: sa.Row[Any]) -> dict[str, Any]:
    """One stored record in the export's shape (a `details` that no longer parses is shown
    as it is stored, under "unreadable")."""
    try:
        details = json.loads(row.details)
    except json.JSONDecodeError:
        details = {"unreadable": row.details}
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "subject": row.subject,
        "details": details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "key_id": row.key_id,
    }


def export_chunks(
    session: Session,
    *,
    fmt: str,
    since: datetime | None = None,
    until: datetime | None = None,
    yield_per: int = YIELD_PER,
) -> Iterator[str]:
    """The export as text, one record (or the header) per chunk, read while it is written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use json, jsonl or csv")
    found = rows(session, since=since, until=until, yield_per=yield_per)
    if fmt == "jsonl":
        for row in found:
            yield json.dumps(record(row), ensure_ascii=False) + "\n"
    elif fmt == "csv":
        yield _csv_line(EXPORT_FIELDS)
        for row in found:
            doc = record(row)
            doc["details"] = canonical_json(doc["details"])
            yield _csv_line([doc[name] for name in EXPORT_FIELDS])
    else:
        yield from _json_array(found)


def _json_array(found: Iterator[sa.Row[Any]]) -> Iterator[str]:
    opened = False
    for row in found:
        body = json.dumps(record(row), indent=2, ensure_ascii=False).replace("\n", "\n  ")
        yield ("[\n  " if not opened else ",\n  ") + body
        opened = True
    yield "\n]\n" if opened else "[]\n"


def _csv_line(values: Any) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()
