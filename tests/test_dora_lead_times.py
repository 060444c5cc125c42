"""Each commit's lead time is stored when its release first runs in production, and the DORA
figures read those rows: written once (not for staging, not again on a redeploy), written
when the commits arrive after the deploy, backfilled by the migration, and the medians equal
the exact computation over the raw history on a generated data set."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bot import migrate
from bot.app import Overrides
from bot.config import Config, parse_config
from bot.domain import states
from bot.ports import Commit, Comparison
from bot.services import assessment, dora, lead_times
from bot.services.production import Production
from bot.store.db import Database, make_engine
from bot.store.tables import (
    CommitLeadCount,
    CommitLeadTime,
    Deployment,
    Release,
    ReleaseCommit,
)
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeScm, FrozenClock, commits
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    deployment_status,
    encode,
    example_config_data,
    generic_body,
    github_headers,
    signed_headers,
)
from tests.test_dora import NOW, History, commit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AUTHORED = ("2026-11-16T08:00:00+00:00", "2026-11-16T09:30:00+00:00", "2026-11-16T12:00:00Z")


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def batch_config() -> Config:
    """payments-batch goes staging -> prod (production: the last), both by generic webhook."""
    data = example_config_data()
    data["freezes"] = []
    data["services"] = {
        "payments-batch": {
            "repo": "github:acme/payments-batch",
            "environments": [
                {"name": "staging", "track": {"generic": True}},
                {"name": "prod", "track": {"generic": True}},
            ],
        }
    }
    return parse_config(data)


async def generic(bot: Bot, environment: str, status: str, *, sha: str = SHA_A, run: int) -> None:
    body = generic_body(
        status,
        environment=environment,
        sha=sha,
        url=f"https://ci.example/run/{run}",
        commits=[
            {"sha": f"{i + 1:040x}", "message": "change", "author": "Alice", "timestamp": at}
            for i, at in enumerate(AUTHORED)
        ],
    )
    raw = encode(body)
    answer = await bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert answer.status_code == 202, answer.text


def stored(bot: Bot) -> list[CommitLeadTime]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(CommitLeadTime).order_by(CommitLeadTime.lead_us)).all())


def deployment_of(bot: Bot, environment: str, attempt: int = 1) -> Deployment:
    with bot.runtime.db.read() as session:
        return session.exec(
            select(Deployment)
            .where(Deployment.environment == environment)
            .where(Deployment.attempt == attempt)
        ).one()


async def test_written_once_at_the_first_production_run_not_for_staging_nor_a_redeploy(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, config=batch_config()
    )
    env = {"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}
    async with bot_factory(env=env, overrides=overrides) as bot:
        await generic(bot, "staging", "started", run=1)
        await generic(bot, "staging", "succeeded", run=1)
        assert deployment_of(bot, "staging").state == states.SUCCEEDED
        assert stored(bot) == []  # staging is not production

        clock.advance(hours=2)
        await generic(bot, "prod", "started", run=2)
        clock.advance(minutes=10)
        await generic(bot, "prod", "succeeded", run=2)
        first = deployment_of(bot, "prod")
        assert first.deployed_at == clock.now()
        rows = stored(bot)
        expected = sorted(
            micros(first.deployed_at) - micros(datetime.fromisoformat(at)) for at in AUTHORED
        )
        assert [row.lead_us for row in rows] == expected
        assert {(r.environment, r.deployment_id, r.deployed_at) for r in rows} == {
            ("prod", first.id, first.deployed_at)
        }
        assert {r.sha for r in rows} == {f"{i + 1:040x}" for i in range(3)}

        # The same version deployed again (a new run of it): a deployment, no new lead times.
        clock.advance(hours=1)
        await generic(bot, "prod", "started", run=3)
        await generic(bot, "prod", "succeeded", run=3)
        assert deployment_of(bot, "prod", attempt=2).deployed_at == clock.now()
        assert [(r.id, r.lead_us, r.deployment_id) for r in stored(bot)] == [
            (r.id, r.lead_us, r.deployment_id) for r in rows
        ]
        with bot.runtime.db.read() as session:
            counts = session.exec(select(CommitLeadCount)).all()
            row = dora.metrics(
                session, now=clock.now(), days=7, production=Production.of(batch_config())
            )
        assert sum(c.commits for c in counts) == 3
        assert row.deployments == 2
        assert row.lead_time_median_hours == expected[1] / 1e6 / 3600


async def test_commits_known_only_after_the_deploy_are_timed_from_it(
    bot_factory: BotFactory, clock: FrozenClock
) -> None:
    scm = FakeScm()
    made = commits(3)  # authored 2026-11-10 09:00, 09:01 and 09:02 UTC
    scm.add(base=None, head=SHA_A, comparison=made)
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, scm_clients={"github": scm}
    )
    async with bot_factory(overrides=overrides) as bot:
        body = encode(deployment_status("success"))
        answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 202, answer.text
        assert stored(bot) == []  # it ran before the code host was asked what ships in it
        deployed = deployment_of(bot, "production")
        assert deployed.deployed_at == clock.now()

        clock.advance(minutes=5)
        await bot.send_outbox()  # the assessment stores the commits: timed from the deploy
        rows = stored(bot)
        assert [r.lead_us for r in rows] == sorted(
            micros(clock.now() - timedelta(minutes=5)) - micros(c.authored_at)
            for c in made.commits
            if c.authored_at
        )
        assert {r.deployment_id for r in rows} == {deployed.id}


# --- the medians equal the exact computation -----------------------------------------------


def exact_medians(
    db: Database, *, now: datetime, days: int, production: Callable[[str, str], bool]
) -> dict[str | None, float | None]:
    """The definition, in Python over the raw rows: each release's first production run in
    the window, each of its commits' authored time to it (negative counts 0), the median."""
    with db.read() as session:
        runs = session.exec(
            select(Deployment)
            .where(Deployment.deployed_at != None)  # noqa: E711
            .order_by(Deployment.deployed_at, Deployment.id)
        ).all()
        commit_rows = session.exec(select(ReleaseCommit)).all()
    firsts: dict[int, Deployment] = {}
    for run in runs:
        if production(run.service, run.environment):
            firsts.setdefault(run.release_id, run)
    start = now - timedelta(days=days)
    leads: dict[str | None, list[float]] = {None: []}
    for row in commit_rows:
        first = firsts.get(row.release_id)
        if first is None or row.authored_us is None or first.deployed_at is None:
            continue
        if not start < first.deployed_at <= now:
            continue
        lead = max(micros(first.deployed_at) - row.authored_us, 0) / 1e6
        leads[None].append(lead)
        leads.setdefault(first.service, []).append(lead)
    return {
        name: statistics.median(values) / 3600 if values else None for name, values in leads.items()
    }


def generated_history(db: Database, seed: int) -> None:
    """Releases of three services over 120 days: staging then production, retries and
    redeploys, commits authored after their deploy and commits without a time."""
    rng = random.Random(seed)
    history = History(db)
    for number in range(60):
        service = rng.choice(("checkout", "ledger", "search"))
        name = f"R{number:02d}"
        deployed = NOW - timedelta(days=rng.uniform(0, 120), seconds=rng.randint(0, 86_399))
        made = [
            commit(
                f"{name.lower()}c{i}",
                None
                if rng.random() < 0.1
                else deployed - timedelta(minutes=rng.uniform(-30, 4000)),
            )
            for i in range(rng.randint(0, 7))
        ]
        history.release(name, service, made, created=deployed - timedelta(hours=3))
        if rng.random() < 0.5:
            history.deploy(
                f"{name}-staging",
                release=name,
                service=service,
                environment="staging",
                state=states.VERIFIED,
                created=deployed - timedelta(hours=2),
                deployed=deployed - timedelta(hours=1, minutes=rng.randint(0, 50)),
            )
        for attempt in range(1, rng.choice((2, 2, 2, 3, 4))):
            at = deployed + timedelta(hours=(attempt - 1) * rng.uniform(1, 30))
            history.deploy(
                f"{name}-{attempt}",
                release=name,
                service=service,
                state=rng.choice((states.VERIFIED, states.VERIFIED, states.ROLLED_BACK)),
                created=at - timedelta(minutes=5),
                deployed=at,
                attempt=attempt,
            )


@pytest.mark.parametrize(
    "now",
    [NOW, NOW.replace(hour=0), NOW - timedelta(days=3, minutes=17, microseconds=5)],
)
def test_medians_equal_the_exact_computation_on_a_generated_history(
    db: Database, now: datetime
) -> None:
    generated_history(db, seed=20261206)
    by_name = lambda _service, environment: environment == "production"  # noqa: E731
    windows = (1, 7, 30, 90, 365)
    with db.read() as session:
        rows = dora.report(session, now=now, windows=windows)
        one = dora.metrics(session, now=now, days=30, service="ledger")
    for days in windows:
        expected = exact_medians(db, now=now, days=days, production=by_name)
        got = {row.service: row.lead_time_median_hours for row in rows if row.days == days}
        assert got[None] == expected[None], days
        for name in ("checkout", "ledger", "search"):
            assert got.get(name) == expected.get(name), (days, name)
    assert (
        one.lead_time_median_hours
        == exact_medians(db, now=now, days=30, production=by_name)["ledger"]
    )
    assert any(row.lead_time_median_hours for row in rows if row.days == 7)


def test_a_replaced_commit_list_rewrites_the_lead_times(db: Database) -> None:
    history = History(db)
    deployed = NOW - timedelta(days=1)
    history.release("A", "checkout", [commit("a1", deployed - timedelta(hours=2))], NOW)
    history.deploy(
        "A", release="A", service="checkout", state=states.VERIFIED,
        created=deployed, deployed=deployed,
    )  # fmt: skip
    with db.read() as session:
        assert dora.metrics(session, now=NOW, days=7).lead_time_median_hours == 2.0

    def replace(session: Session) -> None:
        release = session.get(Release, history.releases["A"])
        assert release is not None
        made = tuple(
            commit_obj(f"a{i}", deployed - timedelta(hours=h)) for i, h in enumerate((4, 6, 8))
        )
        assessment.store_comparison(
            release,
            comparison=Comparison(commits=made, files=(), total_commits=3, truncated=False),
            base=None,
            source="scm",
        )

    db.write(replace)
    with db.read() as session:
        assert dora.metrics(session, now=NOW, days=7).lead_time_median_hours == 6.0
        counts = session.exec(select(CommitLeadCount)).all()
    assert sum(c.commits for c in counts) == 3


def commit_obj(sha: str, authored: datetime) -> Commit:
    return Commit(sha=sha * 20, message="change", author="Dev", authored_at=authored)


# --- the migration backfills the history stored before it ------------------------------------


def test_the_migration_backfills_the_lead_times_of_the_stored_history(
    database_url_factory: Callable[..., str],
) -> None:
    engine = make_engine(database_url_factory(migrated=False))
    try:
        migrate.upgrade(engine, "0003")
        ran = NOW - timedelta(days=2)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(Release.__table__),  # type: ignore[attr-defined]
                [
                    {"id": 1, "service": "checkout", "sha": SHA_A, "created_at": ran},
                    {"id": 2, "service": "checkout", "sha": SHA_B, "created_at": ran},
                ],
            )
            conn.execute(
                sa.insert(ReleaseCommit.__table__),  # type: ignore[attr-defined]
                [
                    {"release_id": 1, "sha": "a1", "authored_us": micros(ran - timedelta(hours=3))},
                    {"release_id": 1, "sha": "a2", "authored_us": micros(ran - timedelta(hours=1))},
                    {"release_id": 1, "sha": "a3", "authored_us": None},
                    {"release_id": 2, "sha": "b1", "authored_us": micros(ran)},
                ],
            )
            base = {
                "service": "checkout", "state": states.VERIFIED, "row_version": 1,
                "source": "test", "ci_retries": 0,
            }  # fmt: skip
            conn.execute(
                sa.insert(Deployment.__table__),  # type: ignore[attr-defined]
                [
                    {**base, "id": 1, "release_id": 1, "environment": "staging", "sha": SHA_A,
                     "attempt": 1, "created_at": ran, "updated_at": ran,
                     "deployed_at": ran - timedelta(hours=1)},
                    {**base, "id": 2, "release_id": 1, "environment": "production", "sha": SHA_A,
                     "attempt": 1, "created_at": ran, "updated_at": ran, "deployed_at": ran},
                    {**base, "id": 3, "release_id": 1, "environment": "production", "sha": SHA_A,
                     "attempt": 2, "created_at": ran, "updated_at": ran,
                     "deployed_at": ran + timedelta(hours=5)},
                    {**base, "id": 4, "release_id": 2, "environment": "production", "sha": SHA_B,
                     "attempt": 1, "created_at": ran, "updated_at": ran, "deployed_at": None},
                ],
            )  # fmt: skip
        migrate.upgrade(engine)

        db = Database(engine)
        with db.read() as session:
            rows = session.exec(
                select(CommitLeadTime).order_by(CommitLeadTime.environment, CommitLeadTime.lead_us)
            ).all()
            counts = session.exec(select(CommitLeadCount)).all()
            row = dora.metrics(session, now=NOW, days=7)
        hour = 3_600_000_000
        assert [(r.environment, r.deployment_id, r.sha, r.lead_us) for r in rows] == [
            ("production", 2, "a2", hour),
            ("production", 2, "a1", 3 * hour),
            ("staging", 1, "a2", 0),  # each environment's first run, for the reading scope
            ("staging", 1, "a1", 2 * hour),
        ]
        assert rows[0].deployed_at == ran and rows[0].lead_bin == lead_times.lead_bin(hour)
        assert sorted((c.environment, c.commits) for c in counts) == [
            ("production", 1),
            ("production", 1),
            ("staging", 1),
            ("staging", 1),
        ]
        assert row.lead_time_median_hours == 2.0  # 1h and 3h; the redeploy adds nothing
    finally:
        engine.dispose()


def test_lead_bins_keep_the_order_of_lead_times() -> None:
    leads = sorted({0, 1, 999_999, 1_000_000, 15_999_999, 16_000_000, 17_000_000, 31_999_999}
                   | {random.Random(7).randint(0, 10**14) for _ in range(2000)})  # fmt: skip
    bins = [lead_times.lead_bin(lead) for lead in leads]
    assert bins == sorted(bins)
    assert [lead_times.lead_bin(s * 1_000_000) for s in (0, 15, 16, 17, 18, 31, 32)] == [
        0, 15, 16, 16, 17, 23, 24,
    ]  # fmt: skip
