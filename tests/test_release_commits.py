"""A release's commits as `release_commit` rows: written where the commit list is stored
(the assessment worker after the compare API, the generic webhook's own list), replaced
with it, and what the DORA lead time is measured from."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bot.app import Overrides
from bot.ports import Commit, Comparison
from bot.services import assessment, dora
from bot.store.db import Database
from bot.store.tables import CommitLeadCount, CommitLeadTime, Release, ReleaseCommit
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeScm, FrozenClock, commits
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    signed_headers,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def stored(bot: Bot) -> dict[str, int | None]:
    with bot.runtime.db.read() as session:
        return {row.sha: row.authored_us for row in session.exec(select(ReleaseCommit)).all()}


async def github_deploy(bot: Bot, state: str) -> None:
    body = encode(deployment_status(state))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202, answer.text


async def test_the_assessment_stores_the_commits_and_lead_time_is_read_from_them(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    scm = FakeScm()
    made = commits(3)  # authored 2026-11-10 09:00, 09:01 and 09:02 UTC
    scm.add(base=None, head=SHA_A, comparison=made)
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, scm_clients={"github": scm}
    )
    async with bot_factory(overrides=overrides) as bot:
        await github_deploy(bot, "in_progress")
        await bot.send_outbox()  # the worker compares and records: the rows are written
        assert stored(bot) == {c.sha: micros(c.authored_at) for c in made.commits if c.authored_at}
        clock.advance(minutes=20)
        await github_deploy(bot, "success")
        await bot.send_outbox()
        deployed = clock.now()

        with bot.runtime.db.read() as session:
            row = dora.metrics(session, now=deployed + timedelta(hours=1), days=7)
        # The median commit is the middle one, authored 09:01 on 2026-11-10.
        middle = datetime(2026, 11, 10, 9, 1, tzinfo=UTC)
        assert row.deployments == 1
        assert row.lead_time_median_hours == (deployed - middle).total_seconds() / 3600

        # The lead times stored when it first ran in production are what is read: without
        # them neither the commit rows nor the JSON on the release are read again.
        def forget(session: Session) -> None:
            session.execute(sa.delete(CommitLeadTime))
            session.execute(sa.delete(CommitLeadCount))

        bot.runtime.db.write(forget)
        with bot.runtime.db.read() as session:
            release = session.exec(select(Release)).one()
            assert release.commits is not None and len(release.commits) == 3
            row = dora.metrics(session, now=deployed + timedelta(hours=1), days=7)
        assert row.lead_time_median_hours is None and row.deployments == 1


async def test_the_generic_webhook_stores_its_commits(bot_factory: BotFactory) -> None:
    async with bot_factory(env={"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}) as bot:
        raw = encode(generic_body("started"))
        answer = await bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
        assert answer.status_code == 202, answer.text
        # "2026-11-16T15:04:05+01:00": kept as the instant it names.
        assert stored(bot) == {SHA_A: micros(datetime(2026, 11, 16, 14, 4, 5, tzinfo=UTC))}


def commit(sha: str, authored: datetime | None) -> Commit:
    return Commit(sha=sha * 40, message="change", author="Dev", authored_at=authored)


def comparison(*made: Commit) -> Comparison:
    return Comparison(commits=made, files=(), total_commits=len(made), truncated=False)


@pytest.fixture
def release_id(db: Database) -> int:
    def add(session: Session) -> int:
        row = Release(service="checkout", sha="a" * 40, created_at=datetime.now(UTC))
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id

    return db.write(add)


def store(db: Database, release_id: int, compared: Comparison) -> dict[str, Any]:
    def write(session: Session) -> dict[str, Any]:
        release = session.get(Release, release_id)
        assert release is not None
        assessment.store_comparison(release, comparison=compared, base=None, source="scm")
        session.add(release)
        session.flush()
        rows = session.exec(
            select(ReleaseCommit).where(ReleaseCommit.release_id == release_id)
        ).all()
        return {row.sha[0]: row.authored_us for row in rows}

    return db.write(write)


def test_storing_again_replaces_the_rows(db: Database, release_id: int) -> None:
    at = datetime(2026, 11, 10, 9, 0, 0, 123456, tzinfo=UTC)
    first = store(db, release_id, comparison(commit("a", at), commit("b", at)))
    assert first == {"a": micros(at), "b": micros(at)}
    # Compared again from another base: b stays (same sha, same key), a goes, c comes.
    later = at + timedelta(hours=1)
    second = store(db, release_id, comparison(commit("b", later), commit("c", None)))
    assert second == {"b": micros(later), "c": None}


def test_one_row_per_sha_and_times_without_an_offset_are_utc(db: Database, release_id: int) -> None:
    naive = datetime(2026, 11, 10, 9, 0)
    paris = datetime(2026, 11, 10, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    found = store(
        db,
        release_id,
        comparison(commit("a", naive), commit("a", None), commit("b", paris)),
    )
    assert found == {
        "a": micros(datetime(2026, 11, 10, 9, 0, tzinfo=UTC)),
        "b": micros(datetime(2026, 11, 10, 10, 0, tzinfo=UTC)),
    }
    assert assessment.epoch_micros(None) is None
    # Exact to the microsecond, with no float on the way.
    at = datetime(2026, 11, 10, 9, 0, 0, 7, tzinfo=UTC)
    assert assessment.epoch_micros(at) == calendar.timegm(at.timetuple()) * 10**6 + 7


def test_a_release_that_is_not_in_a_session_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the release's session"):
        assessment.store_comparison(
            Release(service="x", sha="a" * 40, created_at=datetime.now(UTC)),
            comparison=comparison(),
            base=None,
            source="scm",
        )
