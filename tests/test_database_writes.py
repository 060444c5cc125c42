"""`Database.write` after a failure: nothing of the failed write is kept, and the writes
after it go through (on SQLite they share one connection, which must not stay wedged)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, col, select

from bot.services import audit
from bot.store.db import Database
from bot.store.tables import AuditEvent
from tests.fakes import FrozenClock


def note(clock: FrozenClock, action: str) -> Any:
    def write(session: Session) -> None:
        audit.append(session, at=clock.now(), actor="test", action=action, subject="db")

    return write


def actions(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.exec(select(AuditEvent.action).order_by(col(AuditEvent.seq))).all())


def test_a_write_whose_commit_fails_keeps_nothing_and_the_next_write_goes_through(
    db: Database, clock: FrozenClock
) -> None:
    failures = [sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))]

    def commit_fails_once(_conn: Any) -> None:
        if failures:
            raise failures.pop()

    sa.event.listen(db.engine, "commit", commit_fails_once)
    try:
        with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
            db.write(note(clock, "test.lost"))
        db.write(note(clock, "test.kept"))
        db.write(note(clock, "test.kept_too"))
    finally:
        sa.event.remove(db.engine, "commit", commit_fails_once)

    assert actions(db) == ["test.kept", "test.kept_too"]
    with db.read() as session:
        checked, broken = audit.verify_chain(session)
    assert broken is None and checked == 2


def test_a_disposed_database_writes_on_a_fresh_connection(db: Database, clock: FrozenClock) -> None:
    db.write(note(clock, "test.before"))
    db.engine.dispose()  # as a restart drops every connection
    db.write(note(clock, "test.after"))
    assert actions(db) == ["test.before", "test.after"]


def test_a_write_whose_row_was_deleted_underneath_is_run_again(
    db: Database, clock: FrozenClock
) -> None:
    """An unlock deleting an environment's lock while a rollback updates it (two
    PostgreSQL connections): the ORM finds no row to update and raises StaleDataError.
    The rollback is not lost: it runs again, on what the database holds now."""
    attempts: list[int] = []

    def relock(session: Session) -> str:
        attempts.append(len(attempts) + 1)
        note(clock, f"relock.attempt{len(attempts)}")(session)
        if len(attempts) == 1:
            raise StaleDataError(
                "UPDATE statement on table 'environment_lock' expected to update 1 row(s); "
                "0 were matched."
            )
        return "locked afresh"

    assert db.write(relock) == "locked afresh"
    assert attempts == [1, 2]
    assert actions(db) == ["relock.attempt2"]  # nothing of the refused attempt is kept
