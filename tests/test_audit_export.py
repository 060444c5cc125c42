"""`releasebot audit export --format json|jsonl|csv --since --until`, as a SIEM reads it:
every format carries the same records, the window is [since, until), and the export streams
(memory stays flat however many records there are)."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.domain.audit import format_at, record_hash
from bot.services import audit
from bot.services.audit_export import EXPORT_FIELDS, export_chunks
from bot.store.db import Database
from bot.store.tables import AuditEvent

START = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    return database_url


def append_hourly(db: Database, count: int) -> None:
    """`count` records, one an hour from START, one of them with text a CSV must quote."""
    for index in range(count):
        db.write(
            partial(
                audit.append,
                at=START + timedelta(hours=index),
                actor="U0RM1",
                action="test.recorded",
                subject=f"deployment:{index}",
                details={"index": index, "note": 'Déployé, "quoted"\nnew line' if index else "ok"},
            )
        )


def export(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["audit", "export", *args]) == 0
    return capsys.readouterr().out


def hours(records: list[dict[str, Any]]) -> list[int]:
    return [r["details"]["index"] for r in records]


def test_every_format_carries_the_same_records_within_since_and_until(
    db: Database, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    append_hourly(db, 6)
    window = ["--since", "2026-11-17T11:00:00Z", "--until", "2026-11-17T14:00:00+00:00"]

    everything = json.loads(export(capsys, "--format", "json"))
    assert hours(everything) == [0, 1, 2, 3, 4, 5]
    for record in everything:
        assert list(record) == list(EXPORT_FIELDS)
        assert record["hash"] == record_hash(
            **{k: record[k] for k in EXPORT_FIELDS if k not in ("hash", "key_id")}
        )

    as_json = json.loads(export(capsys, "--format", "json", *window))
    assert hours(as_json) == [1, 2, 3]  # since inclusive, until exclusive
    assert as_json == everything[1:4]

    lines = export(capsys, "--format", "jsonl", *window).splitlines()
    assert [json.loads(line) for line in lines] == as_json

    rows = list(csv.reader(io.StringIO(export(capsys, "--format", "csv", *window))))
    assert rows[0] == list(EXPORT_FIELDS)
    assert len(rows) == 1 + len(as_json)
    for record, row in zip(as_json, rows[1:], strict=True):
        assert row[0] == str(record["seq"]) and json.loads(row[5]) == record["details"]
        assert row[1:5] + row[6:8] == [record[k] for k in EXPORT_FIELDS[1:5] + EXPORT_FIELDS[6:8]]
        assert row[8] == (record["key_id"] or "")  # an unkeyed record's null key id is empty
    assert json.loads(rows[1][5])["note"] == 'Déployé, "quoted"\nnew line'

    assert export(capsys, "--format", "json", "--since", "2027-01-01T00:00Z") == "[]\n"
    assert export(capsys, "--format", "jsonl", "--since", "2027-01-01T00:00Z") == ""
    assert export(capsys, "--format", "csv", "--until", "2026-01-01T00:00Z").splitlines() == [
        ",".join(EXPORT_FIELDS)
    ]


def test_a_bad_window_is_refused_and_prints_nothing(
    db: Database, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    append_hourly(db, 2)
    capsys.readouterr()
    assert main(["audit", "export", "--until", "yesterday"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--until 'yesterday' is not an ISO 8601 time" in err
    later, earlier = "2026-11-17T12:00Z", "2026-11-17T11:00Z"
    assert main(["audit", "export", "--since", later, "--until", earlier]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "is not before --until" in err


def bulk_records(db: Database, count: int) -> None:
    """`count` stored records written at once (the export reads, it does not re-hash)."""
    table = AuditEvent.__table__  # type: ignore[attr-defined]

    def insert(session: Any) -> None:
        rows = [
            {
                "seq": seq,
                "at": format_at(START + timedelta(seconds=seq)),
                "actor": "releasebot",
                "action": "deployment.state_changed",
                "subject": f"deployment:{seq}",
                "details": json.dumps({"from": "deploying", "to": "verifying", "pad": "x" * 200}),
                "prev_hash": f"{seq - 1:064x}",
                "hash": f"{seq:064x}",
            }
            for seq in range(1, count + 1)
        ]
        for start in range(0, count, 5000):
            session.connection().execute(sa.insert(table), rows[start : start + 5000])

    db.write(insert)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_the_export_streams_in_bounded_memory(db: Database, fmt: str) -> None:
    """20,000 records of ~400 bytes would hold well over 8 MB if read whole; streaming
    holds one batch of rows and one record's text at a time."""
    count = 20_000
    bulk_records(db, count)
    seen = 0
    with db.read() as session:
        chunks = export_chunks(session, fmt=fmt, yield_per=500)
        tracemalloc.start()
        try:
            first = next(chunks)
            assert first.startswith(("[", "seq", "{"))
            for chunk in chunks:
                seen += chunk.count('"deployment.state_changed"') + chunk.count(
                    ",deployment.state_changed,"
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    seen += first.count("deployment.state_changed")
    assert seen == count
    assert peak < 2_000_000, f"peak {peak:,} bytes while exporting {count:,} records"
