"""The hash-chained audit record, as an auditor meets it: `releasebot audit verify|export`.

Records come from real deployments (signed GitHub webhooks posted to the running app);
the CLI then reads the same database through RELEASEBOT_DATABASE_URL. Tampering is done
the way an attacker with database access would do it: raw SQL behind the app's back.
Hashes are recomputed here from the CONTRACT.md definition, independently of bot.domain.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.cli import main
from bot.services import audit
from bot.store.db import Database, make_engine
from bot.store.tables import AuditEvent
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, github_headers

EXIT_OK, EXIT_FAIL = 0, 1
GENESIS = "0" * 64
EXPORT_FIELDS = [
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
    "key_id",
]
HASHED_FIELDS = ("seq", "at", "actor", "action", "subject", "details")


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the `releasebot` CLI at the test database, as an operator would."""
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    return database_url


async def deploy(
    bot: Bot, clock: FrozenClock, sha: str, *statuses: str, description: str | None = None
) -> None:
    """Report a GitHub deployment of `sha` to production, one status a minute."""
    for status in statuses:
        body = deployment_status(status, sha=sha)
        if description is not None:
            body["deployment_status"]["description"] = description
        raw = encode(body)
        answer = await bot.post("/webhooks/github", raw, github_headers("deployment_status", raw))
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted", answer.json()
        clock.advance(minutes=1)


async def two_releases(bot: Bot, clock: FrozenClock) -> datetime:
    """SHA_A deployed at 10:00, SHA_B an hour later; returns when the second one began."""
    await deploy(bot, clock, SHA_A, "in_progress", "success", description="Déployé ✓ <ok>")
    clock.advance(hours=1)
    second = clock.now()
    await deploy(bot, clock, SHA_B, "pending", "in_progress", "failure")
    return second


def stored_events(database_url: str) -> list[AuditEvent]:
    database = Database(make_engine(database_url))
    try:
        with database.read() as session:
            return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all())
    finally:
        database.dispose()


def run_sql(database_url: str, statement: str, **params: Any) -> None:
    """Change the database behind the app's back."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            assert result.rowcount == 1
    finally:
        engine.dispose()


def expected_hash(record: dict[str, Any]) -> str:
    """sha256(prev_hash + canonical JSON of the other fields), per CONTRACT.md."""
    hashed = {name: record[name] for name in HASHED_FIELDS}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((record["prev_hash"] + canonical).encode("utf-8")).hexdigest()


def assert_is_an_unbroken_chain(records: list[dict[str, Any]]) -> None:
    previous = GENESIS
    for number, record in enumerate(records, start=1):
        assert record["seq"] == number
        assert record["prev_hash"] == previous
        assert record["hash"] == expected_hash(record), f"record {number} does not hash"
        previous = record["hash"]


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", "verify"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def export(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["audit", "export", *args]) == EXIT_OK
    return capsys.readouterr().out


def exported_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(export(capsys, "--format", "json", *args))
    return records


def exported_csv(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[list[str], list[dict[str, Any]]]:
    rows = list(csv.reader(io.StringIO(export(capsys, "--format", "csv", *args))))
    header, body = rows[0], rows[1:]
    records = [
        {
            **dict(zip(header, row, strict=True)),
            "seq": int(row[0]),
            "details": json.loads(row[5]),
            "key_id": row[8] or None,  # CSV writes an unkeyed record's null key id as ""
        }
        for row in body
    ]
    return header, records


def mentions_record(stderr: str, seq: int) -> bool:
    return re.search(rf"\brecord {seq}\b", stderr) is not None


# --- verify ------------------------------------------------------------------------------


async def test_records_written_by_real_deployments_form_a_chain_audit_verify_accepts(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)
    events = stored_events(cli_env)
    actions = [e.action for e in events]
    assert actions.count("deployment.created") == 2
    assert actions.count("deployment.state_changed") >= 4  # 2 for SHA_A, 2 for SHA_B

    code, out, err = verify(capsys)

    assert (code, err) == (EXIT_OK, "")
    assert f"{len(events)} records verified" in out


async def test_an_empty_audit_trail_verifies(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = verify(capsys)
    assert code == EXIT_OK
    assert "0 records verified" in out


@pytest.mark.parametrize(
    ("column", "forge"),
    [
        ("details", lambda details: details.replace('"to":"succeeded"', '"to":"verified"')),
        ("actor", lambda actor: "github:someone-else"),
    ],
    ids=["details", "actor"],
)
async def test_editing_one_stored_record_is_reported_at_that_record(
    bot: Bot,
    clock: FrozenClock,
    cli_env: str,
    capsys: pytest.CaptureFixture[str],
    column: str,
    forge: Any,
) -> None:
    await two_releases(bot, clock)
    events = stored_events(cli_env)
    [succeeded] = [e for e in events if '"to":"succeeded"' in e.details]
    assert succeeded.seq < len(events)  # a record in the middle of the chain
    forged = forge(getattr(succeeded, column))
    assert forged != getattr(succeeded, column)

    run_sql(
        cli_env,
        f"UPDATE audit_event SET {column} = :value WHERE seq = :seq",
        value=forged,
        seq=succeeded.seq,
    )
    code, out, err = verify(capsys)

    assert code == EXIT_FAIL
    assert "intact" not in out
    assert mentions_record(err, succeeded.seq), err


async def test_a_forger_who_also_rehashes_the_edited_record_is_caught_at_the_next_one(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)
    events = stored_events(cli_env)
    victim = events[2]
    record = {name: getattr(victim, name) for name in (*HASHED_FIELDS, "prev_hash")}
    record["details"] = {**json.loads(victim.details), "note": "approved by the CTO"}
    details = json.dumps(
        record["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )

    run_sql(
        cli_env,
        "UPDATE audit_event SET details = :d, hash = :h WHERE seq = :seq",
        d=details,
        h=expected_hash(record),
        seq=victim.seq,
    )
    code, _, err = verify(capsys)

    assert code == EXIT_FAIL
    assert mentions_record(err, victim.seq + 1), err


async def test_deleting_a_record_from_the_middle_is_detected(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)
    assert len(stored_events(cli_env)) >= 4

    run_sql(cli_env, "DELETE FROM audit_event WHERE seq = :seq", seq=2)
    code, out, err = verify(capsys)

    assert code == EXIT_FAIL
    assert "intact" not in out
    assert mentions_record(err, 3), err
    assert "expected sequence 2" in err


# --- export ------------------------------------------------------------------------------


async def test_json_export_prints_every_record_with_the_contract_fields_in_order(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)
    events = stored_events(cli_env)

    records = exported_json(capsys)

    assert [r["seq"] for r in records] == [e.seq for e in events]
    for record in records:
        assert list(record) == EXPORT_FIELDS
        assert isinstance(record["details"], dict)
        at = datetime.fromisoformat(record["at"])
        assert at.utcoffset() == timedelta(0)
    assert_is_an_unbroken_chain(records)
    created = [r for r in records if r["action"] == "deployment.created"]
    assert [r["details"]["sha"] for r in created] == [SHA_A, SHA_B]
    assert any(r["details"].get("note") == "Déployé ✓ <ok>" for r in records)


async def test_csv_export_has_the_contract_header_and_the_same_records_as_json(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await two_releases(bot, clock)

    header, records = exported_csv(capsys)

    assert header == EXPORT_FIELDS
    assert len(records) == len(stored_events(cli_env))
    assert_is_an_unbroken_chain(records)
    assert records == exported_json(capsys)


async def test_export_since_keeps_only_records_from_that_time_on(
    bot: Bot, clock: FrozenClock, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    second = await two_releases(bot, clock)
    everything = exported_json(capsys)

    since = exported_json(capsys, "--since", second.isoformat())

    expected = [r for r in everything if datetime.fromisoformat(r["at"]) >= second]
    assert since == expected
    assert 0 < len(since) < len(everything)
    assert {r["details"].get("sha") for r in since} - {None} == {SHA_B}
    assert exported_json(capsys, "--since", second.strftime("%Y-%m-%dT%H:%M:%SZ")) == expected
    one_hour_east = (second + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
    assert exported_json(capsys, "--since", one_hour_east) == expected
    _, csv_since = exported_csv(capsys, "--since", second.isoformat())
    assert csv_since == expected


# --- concurrent appends ------------------------------------------------------------------


def append_concurrently(db: Database, clock: FrozenClock, writers: int, each: int) -> list[str]:
    """`writers` threads, released together, each appending `each` records; returns failures."""
    barrier = threading.Barrier(writers)

    def writer(number: int) -> list[str]:
        failures = []
        barrier.wait()
        for index in range(each):
            try:
                db.write(
                    partial(
                        audit.append,
                        at=clock.now(),
                        actor=f"U{number:03d}",
                        action="test.appended",
                        subject=f"writer:{number}",
                        details={"index": index},
                    )
                )
            except Exception as exc:  # noqa: BLE001  (a lost append is the failure we report)
                failures.append(
                    f"writer {number}, append {index}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]}"
                )
        return failures

    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = [pool.submit(writer, n) for n in range(writers)]
        return [failure for future in results for failure in future.result()]


def chain_rows(db: Database) -> Iterator[dict[str, Any]]:
    with db.read() as session:
        for event in audit.iter_events(session):
            yield {**event.model_dump(), "details": json.loads(event.details)}


def test_concurrent_appends_from_many_threads_keep_one_unbroken_chain(
    db: Database, clock: FrozenClock
) -> None:
    """Every state change in every deployment appends here, so this is the hottest row.

    A writer that loses the race for the next `seq` must be retried until it gets in: no
    append may be lost, none may share a seq, and the chain must not fork.
    """
    writers, each = 8, 5

    failures = append_concurrently(db, clock, writers, each)

    assert failures == [], f"{len(failures)} appends were lost, e.g. {failures[0]}"
    records = list(chain_rows(db))
    assert len(records) == writers * each
    assert len({r["seq"] for r in records}) == writers * each
    assert_is_an_unbroken_chain(records)
    for number in range(writers):
        mine = [r["details"]["index"] for r in records if r["actor"] == f"U{number:03d}"]
        assert mine == list(range(each))  # each writer's records, all there, in its order
    with db.read() as session:
        assert audit.verify_chain(session) == (writers * each, None)


def note(session: Session, clock: FrozenClock, actor: str, index: int = 0) -> None:
    audit.append(
        session,
        at=clock.now(),
        actor=actor,
        action="test.appended",
        subject=f"writer:{actor}",
        details={"index": index},
    )


def test_a_transaction_still_open_after_appending_does_not_hold_up_another_writers_append(
    db: Database, clock: FrozenClock
) -> None:
    """A record takes its place in the chain when its transaction commits: a long
    transaction that appended early (a batch of webhook deliveries) does not keep other
    replicas from appending meanwhile, and the chain follows the order of the commits."""
    with Session(db.engine) as slow, ThreadPoolExecutor(max_workers=1) as other:
        note(slow, clock, "slow", 0)
        note(slow, clock, "slow", 1)
        # Waited on for at most ten seconds: a writer queued behind `slow` would wait for
        # ever, since `slow` commits only after it.
        other.submit(db.write, partial(note, clock=clock, actor="quick")).result(timeout=10)
        slow.commit()

    records = list(chain_rows(db))
    assert [(r["seq"], r["actor"], r["details"]["index"]) for r in records] == [
        (1, "quick", 0),
        (2, "slow", 0),
        (3, "slow", 1),
    ]
    assert_is_an_unbroken_chain(records)


def test_records_appended_in_a_rolled_back_savepoint_leave_no_gap_in_the_chain(
    db: Database, clock: FrozenClock
) -> None:
    """A delivery that fails inside a batch is undone with its savepoint: its records go
    with it, the records around it keep their order and the chain stays unbroken."""

    def batch(session: Session) -> None:
        note(session, clock, "kept", 0)
        with session.begin_nested():
            note(session, clock, "kept", 1)
            with session.begin_nested():
                note(session, clock, "kept", 2)
        with pytest.raises(KeyError), session.begin_nested():
            note(session, clock, "undone", 0)
            with session.begin_nested():
                note(session, clock, "undone", 1)
            raise KeyError("the delivery failed")
        note(session, clock, "kept", 3)

    db.write(batch)
    failed = db.submit_write(lambda s: (note(s, clock, "group-undone"), {}["missing"]))
    kept = db.submit_write(partial(note, clock=clock, actor="group-kept"))
    kept.result(timeout=10)
    with pytest.raises(KeyError):
        failed.result(timeout=10)

    records = list(chain_rows(db))
    assert [(r["actor"], r["details"]["index"]) for r in records] == [
        ("kept", 0),
        ("kept", 1),
        ("kept", 2),
        ("kept", 3),
        ("group-kept", 0),
    ]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert_is_an_unbroken_chain(records)
    with db.read() as session:
        assert audit.verify_chain(session) == (5, None)


def test_a_read_of_the_trail_in_the_appending_transaction_sees_its_own_records(
    db: Database, clock: FrozenClock
) -> None:
    def append_then_read(session: Session) -> list[str]:
        note(session, clock, "first")
        note(session, clock, "second")
        found = session.exec(select(AuditEvent.actor).order_by(col(AuditEvent.seq))).all()
        note(session, clock, "third")
        return list(found)

    assert db.write(append_then_read) == ["first", "second"]
    assert [r["actor"] for r in chain_rows(db)] == ["first", "second", "third"]
