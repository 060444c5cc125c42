"""DORA metrics: a hand-built history whose every figure is worked out below, the cluster
tables, the `releasebot metrics` table and the weekly digest job.

NOW is Tuesday 2026-11-17 10:00 UTC (the FrozenClock's default). Production history, oldest
first ("-3d+10m" is NOW - 3 days + 10 minutes); lead = commit authored -> deployed:

checkout
  Z   deployed -100d  verified             lead 100h          (outside every window)
  A   deployed  -40d  verification_failed  lead 48h           incident resolved: 4h
  B   deployed   -8d  verified             lead 10h           (in 30 and 90, not in 7)
  C   deployed   -4d  verified             leads 2h, 5h       (+ one commit with no time)
  F   created    -3d  failed at -3d+10m, never ran; no incident record
  G   created -3d+1h, deployed -3d+2h40m, verified, lead 26h  -> F recovered in 2h30m
  R   deployed   -2d  rolled_back to G     lead 1h            incident resolved: 30m
                                                              (a later duplicate is ignored)
  G2  G's release again (the rollback restoring it), deployed -2d+30m: a deployment, but
      its commits were counted with G
  H   deployed   -1d  verified             lead 4h (authored_at written with a Z)
ledger
  L1  deployed   -5d  verified             lead 30m
  L3  deployed   -2d  verified             no commits stored
  P   pending (never ran): not counted
  S   staging: deployed -1d with a resolved incident: not counted (not production)

7 days:  checkout  C F G R G2 H = 6 deployments, failures F R = 2, CFR 2/6 = 33.3%,
                   leads 1 2 4 5 26 -> median 4h, recoveries 0.5h 2.5h -> median 1.5h
         ledger    L1 L3 = 2 deployments, 0 failures, CFR 0%, lead 0.5h, no recovery
         overall   8 deployments (8/7 = 1.14 a day), 2 failures, CFR 2/8 = 25%,
                   leads 0.5 1 2 4 5 26 -> (2 + 4) / 2 = 3h, recovery 1.5h
30 days: + B       checkout 7 deployments, CFR 2/7 = 28.6%, leads 1 2 4 5 10 26 -> 4.5h
                   overall 9 deployments, CFR 2/9 = 22.2%,
                   leads 0.5 1 2 4 5 10 26 -> 4h, recovery 1.5h
90 days: + A       checkout 8 deployments, failures 3, CFR 37.5%,
                   leads 1 2 4 5 10 26 48 -> 5h, recoveries 0.5 2.5 4 -> 2.5h
                   overall 10 deployments, CFR 3/10 = 30%,
                   leads 0.5 1 2 4 5 10 26 48 -> (4 + 5) / 2 = 4.5h, recovery 2.5h
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.cli import main
from bot.domain import dora as domain
from bot.domain import states
from bot.ports import Commit, Comparison
from bot.scheduling import DIGEST_JOB_ID, build_scheduler, register_digest, weekly_digest
from bot.services import assessment, audit, dora
from bot.settings import load_settings
from bot.store.db import Database
from bot.store.tables import Deployment, OutboxMessage, Release
from tests.helpers import EXAMPLE_CONFIG

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
HOUR = 3600.0


def ago(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return NOW - timedelta(days=days) + timedelta(hours=hours, minutes=minutes)


def commit(sha: str, authored: datetime | str | None, message: str = "change") -> dict[str, Any]:
    """A commit as `assessment.commit_to_dict` stores it."""
    return {
        "sha": sha * 40 if len(sha) == 1 else sha,
        "message": message,
        "author": "Alice Example",
        "author_login": "alice",
        "committer_login": "web-flow",
        "authored_at": authored.isoformat() if isinstance(authored, datetime) else authored,
        "url": f"https://github.com/acme/x/commit/{sha}",
    }


def as_commit(stored: dict[str, Any]) -> Commit:
    authored = stored["authored_at"]
    return Commit(
        sha=stored["sha"],
        message=stored["message"],
        author=stored["author"],
        author_login=stored["author_login"],
        committer_login=stored["committer_login"],
        authored_at=datetime.fromisoformat(authored) if authored else None,
        url=stored["url"],
    )


class History:
    """Inserts releases, deployments and audit records straight into the database; a
    release's commits go through `assessment.store_comparison`, as the worker stores them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ids: dict[str, int] = {}
        self.releases: dict[str, int] = {}

    def release(
        self, name: str, service: str, commits: list[dict[str, Any]] | None, created: datetime
    ) -> int:
        def add(session: Session) -> int:
            row = Release(
                service=service, sha=f"{name.lower():0<40}", version=name, created_at=created
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            if commits is not None:
                made = tuple(as_commit(c) for c in commits)
                assessment.store_comparison(
                    row,
                    comparison=Comparison(
                        commits=made, files=(), total_commits=len(made), truncated=False
                    ),
                    base=None,
                    source="scm",
                )
            return row.id

        self.releases[name] = self.db.write(add)
        return self.releases[name]

    def deploy(
        self,
        name: str,
        *,
        release: str,
        service: str,
        state: str,
        created: datetime,
        deployed: datetime | None,
        finished: datetime | None = None,
        environment: str = "production",
        attempt: int = 1,
        rollback_to: str | None = None,
    ) -> int:
        def add(session: Session) -> int:
            row = Deployment(
                release_id=self.releases[release],
                service=service,
                environment=environment,
                sha=f"{release.lower():0<40}",
                attempt=attempt,
                state=state,
                source="test",
                rollback_to=rollback_to,
                created_at=created,
                updated_at=finished or deployed or created,
                deployed_at=deployed,
                finished_at=finished,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            return row.id

        self.ids[name] = self.db.write(add)
        return self.ids[name]

    def record(self, action: str, deployment: str, at: datetime, **details: Any) -> None:
        self.db.write(
            lambda s: audit.append(
                s,
                at=at,
                actor="releasebot",
                action=action,
                subject=f"deployment:{self.ids[deployment]}",
                details=details,
            )
        )


def simple(
    history: History,
    name: str,
    service: str,
    *,
    deployed: datetime,
    leads_hours: list[float],
    state: str = states.VERIFIED,
) -> None:
    """A release with one commit per lead time, deployed to production once."""
    commits = [
        commit(f"{name.lower()}{i}", deployed - timedelta(hours=h))
        for i, h in enumerate(leads_hours)
    ]
    history.release(name, service, commits, created=deployed - timedelta(minutes=20))
    history.deploy(
        name,
        release=name,
        service=service,
        state=state,
        created=deployed - timedelta(minutes=10),
        deployed=deployed,
        finished=deployed + timedelta(minutes=15),
    )


@pytest.fixture
def history(db: Database) -> History:
    h = History(db)
    simple(h, "Z", "checkout", deployed=ago(days=100), leads_hours=[100])
    simple(
        h,
        "A",
        "checkout",
        deployed=ago(days=40),
        leads_hours=[48],
        state=states.VERIFICATION_FAILED,
    )
    h.record("incident.opened", "A", ago(days=40, minutes=5), check="health")
    h.record("incident.resolved", "A", ago(days=40, hours=4, minutes=5), recovery_seconds=4 * 3600)
    simple(h, "B", "checkout", deployed=ago(days=8), leads_hours=[10])
    h.release(
        "C",
        "checkout",
        [
            commit("c1", ago(days=4, hours=-2)),
            # A message quoting the key: the times come from the rows, never the text.
            commit("c2", ago(days=4, hours=-5), message='"authored_at": "2001-01-01T00:00:00Z"'),
            commit("c3", None),  # the code host gave no time: no lead time
        ],
        created=ago(days=4, hours=-6),
    )
    h.deploy(
        "C",
        release="C",
        service="checkout",
        state=states.VERIFIED,
        created=ago(days=4, minutes=-10),
        deployed=ago(days=4),
        finished=ago(days=4, minutes=15),
    )
    h.release("F", "checkout", [commit("f1", ago(days=3, hours=-1))], created=ago(days=3))
    h.deploy(
        "F",
        release="F",
        service="checkout",
        state=states.FAILED,
        created=ago(days=3),
        deployed=None,
        finished=ago(days=3, minutes=10),
    )
    g_deployed = ago(days=3, hours=2, minutes=40)
    h.release("G", "checkout", [commit("g1", g_deployed - timedelta(hours=26))], ago(days=3))
    h.deploy(
        "G",
        release="G",
        service="checkout",
        state=states.VERIFIED,
        created=ago(days=3, hours=1),
        deployed=g_deployed,
        finished=ago(days=3, hours=3),
    )
    simple(h, "R", "checkout", deployed=ago(days=2), leads_hours=[1], state=states.ROLLED_BACK)
    h.record("incident.opened", "R", ago(days=2, minutes=10), check="error-rate")
    h.deploy(
        "G2",
        release="G",
        service="checkout",
        state=states.VERIFIED,
        created=ago(days=2, minutes=15),
        deployed=ago(days=2, minutes=30),
        finished=ago(days=2, minutes=40),
        attempt=2,
    )
    h.record(  # with the dedup key verification writes: service and environment come from it
        "incident.resolved",
        "R",
        ago(days=2, minutes=40),
        recovery_seconds=1800,
        dedup_key=f"releasebot/checkout/production/{h.ids['R']}",
    )
    h.record("incident.resolved", "R", ago(days=1), recovery_seconds=99_999)  # a duplicate
    h.release("H", "checkout", [commit("h1", "2026-11-16T06:00:00Z")], created=ago(days=1))
    h.deploy(
        "H",
        release="H",
        service="checkout",
        state=states.VERIFIED,
        created=ago(days=1, minutes=-30),
        deployed=ago(days=1),
        finished=ago(days=1, minutes=20),
    )
    simple(h, "L1", "ledger", deployed=ago(days=5), leads_hours=[0.5])
    h.release("L3", "ledger", None, created=ago(days=2, hours=-1))
    h.deploy(
        "L3",
        release="L3",
        service="ledger",
        state=states.VERIFIED,
        created=ago(days=2, minutes=-30),
        deployed=ago(days=2),
        finished=ago(days=2, minutes=20),
    )
    h.release("P", "ledger", [commit("p1", ago(days=1))], created=ago(hours=-2))
    h.deploy(
        "P",
        release="P",
        service="ledger",
        state=states.PENDING,
        created=ago(hours=-1),
        deployed=None,
    )
    h.deploy(
        "S",
        release="P",
        service="ledger",
        environment="staging",
        state=states.VERIFICATION_FAILED,
        created=ago(days=1, hours=-1),
        deployed=ago(days=1),
        finished=ago(days=1, minutes=5),
    )
    h.record(
        "incident.resolved",
        "S",
        ago(days=1, minutes=-30),
        recovery_seconds=7200,
        dedup_key=f"releasebot/ledger/staging/{h.ids['S']}",
    )
    return h


def by_scope(rows: list[domain.DoraMetrics]) -> dict[tuple[str | None, int], domain.DoraMetrics]:
    return {(row.service, row.days): row for row in rows}


def hours(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# --- the figures ---------------------------------------------------------------------------


def test_seven_days_per_service_and_overall(db: Database, history: History) -> None:
    with db.read() as session:
        overall = dora.metrics(session, now=NOW, days=7)
        checkout = dora.metrics(session, now=NOW, days=7, service="checkout")
        ledger = dora.metrics(session, now=NOW, days=7, service="ledger")
    # checkout: C F G R G2 H; F and R failed; leads 1 2 4 5 26; recoveries 0.5h and 2.5h.
    assert (checkout.deployments, checkout.failures) == (6, 2)
    assert checkout.deploys_per_day == pytest.approx(6 / 7)
    assert checkout.change_failure_rate == pytest.approx(2 / 6)
    assert hours(checkout.lead_time_median_hours) == 4.0
    assert hours(checkout.recovery_median_hours) == 1.5
    assert checkout.recoveries == 2
    # ledger: L1 and L3 (P never ran, S is staging); only L1 has a commit time.
    assert (ledger.deployments, ledger.failures) == (2, 0)
    assert ledger.change_failure_rate == 0.0
    assert hours(ledger.lead_time_median_hours) == 0.5
    assert ledger.recovery_median_hours is None and ledger.recoveries == 0
    # overall: 8 deployments, 2 failures, leads 0.5 1 2 4 5 26 -> 3h.
    assert overall.service is None and overall.days == 7
    assert (overall.deployments, overall.failures) == (8, 2)
    assert overall.deploys_per_day == pytest.approx(8 / 7)
    assert overall.change_failure_rate == pytest.approx(0.25)
    assert hours(overall.lead_time_median_hours) == 3.0
    assert hours(overall.recovery_median_hours) == 1.5
    assert overall.recoveries == 2


def test_windows_7_30_90(db: Database, history: History) -> None:
    with db.read() as session:
        rows = dora.report(session, now=NOW)
    figures = by_scope(rows)
    # Rows: for each window, overall then the services with history (alphabetical).
    assert [(r.service, r.days) for r in rows] == [
        (name, days) for days in (7, 30, 90) for name in (None, "checkout", "ledger")
    ]
    # B deployed 8 days ago: in 30 and 90, not in 7.
    assert figures[("checkout", 7)].deployments == 6
    assert figures[("checkout", 30)].deployments == 7
    assert figures[("checkout", 30)].change_failure_rate == pytest.approx(2 / 7)
    assert hours(figures[("checkout", 30)].lead_time_median_hours) == 4.5
    assert figures[(None, 30)].deployments == 9
    assert figures[(None, 30)].change_failure_rate == pytest.approx(2 / 9)
    assert hours(figures[(None, 30)].lead_time_median_hours) == 4.0
    assert hours(figures[(None, 30)].recovery_median_hours) == 1.5
    # A (40 days ago) only in 90; Z (100 days ago) in none.
    checkout_90 = figures[("checkout", 90)]
    assert (checkout_90.deployments, checkout_90.failures) == (8, 3)
    assert checkout_90.change_failure_rate == pytest.approx(3 / 8)
    assert hours(checkout_90.lead_time_median_hours) == 5.0
    assert hours(checkout_90.recovery_median_hours) == 2.5
    assert checkout_90.recoveries == 3
    overall_90 = figures[(None, 90)]
    assert (overall_90.deployments, overall_90.failures) == (10, 3)
    assert overall_90.change_failure_rate == pytest.approx(0.3)
    assert hours(overall_90.lead_time_median_hours) == 4.5
    assert overall_90.deploys_per_day == pytest.approx(10 / 90)
    # metrics() gives what report() gives.
    with db.read() as session:
        for (name, days), row in figures.items():
            assert dora.metrics(session, now=NOW, days=days, service=name) == row


def test_report_lists_configured_services_even_when_quiet(db: Database, history: History) -> None:
    with db.read() as session:
        rows = dora.report(session, now=NOW, windows=(7,), services=["checkout", "storefront"])
        one = dora.report(session, now=NOW, windows=(7, 30), service="ledger")
    assert [r.service for r in rows] == [None, "checkout", "storefront"]
    quiet = rows[2]
    assert (quiet.deployments, quiet.deploys_per_day, quiet.change_failure_rate) == (0, 0.0, None)
    assert quiet.lead_time_median_hours is None and quiet.recovery_median_hours is None
    assert rows[0].deployments == 8  # overall still counts ledger
    assert [(r.service, r.days, r.deployments) for r in one] == [
        ("ledger", 7, 2),
        ("ledger", 30, 2),
    ]


def test_window_boundaries_and_an_empty_history(db: Database, history: History) -> None:
    # A window is (now - days, now]: B, deployed exactly 8 days before NOW, is outside the
    # 8-day window ending at NOW and inside the one ending a minute earlier.
    with db.read() as session:
        outside = dora.metrics(session, now=NOW, days=8, service="checkout")
        inside = dora.metrics(session, now=ago(minutes=-1), days=8, service="checkout")
        empty = dora.metrics(session, now=ago(days=200), days=30)
        with pytest.raises(ValueError, match="days must be between"):
            dora.metrics(session, now=NOW, days=0)
    assert outside.deployments == 6
    assert inside.deployments == 7  # C F G R G2 H and B
    assert empty == domain.DoraMetrics(None, 30, 0, 0.0, None, None, None, 0, 0)


# --- the cluster tables ----------------------------------------------------------------


def metrics_of(
    *, deploys: int, days: int = 30, lead: float | None, cfr: float | None, recovery: float | None
) -> domain.DoraMetrics:
    return domain.DoraMetrics(
        service=None,
        days=days,
        deployments=deploys,
        deploys_per_day=deploys / days,
        lead_time_median_hours=lead,
        change_failure_rate=cfr,
        recovery_median_hours=recovery,
        failures=0,
        recoveries=0,
    )


def test_tables_are_data_labelled_by_year() -> None:
    assert domain.years() == (2019, 2021, 2024)
    for year in domain.years():
        table = domain.table(year)
        assert table.source and str(year) in table.source
        assert set(table.rules) == set(domain.METRICS)
    with pytest.raises(ValueError, match="known years are 2019, 2021, 2024"):
        domain.table(2023)


def test_a_fast_team_with_12_percent_failures() -> None:
    # 60 deploys in 30 days: every 0.5 day (elite everywhere: "on demand" = interval < 1 day).
    m = metrics_of(deploys=60, lead=0.5, cfr=0.12, recovery=0.5)
    # 2024: CFR 12% is nearest the medium cluster's typical 10% (elite 5%, high 20%).
    c2024 = domain.classify(m, year=2024)
    assert c2024.per_metric == {
        "deployment_frequency": "elite",
        "lead_time": "elite",
        "change_failure_rate": "medium",
        "recovery_time": "elite",
    }
    assert c2024.cluster == "medium" and c2024.year == 2024
    assert any("typical value" in note for note in c2024.notes)
    # 2021: lead 0.5h < 1h elite, CFR 12% within 0-15% elite: elite overall.
    c2021 = domain.classify(m, year=2021)
    assert set(c2021.per_metric.values()) == {"elite"} and c2021.cluster == "elite"


def test_a_slow_team_and_unknown_figures() -> None:
    # 2 deploys in 30 days: one every 15 days; lead 200h (8.3 days); no failure, no recovery.
    m = metrics_of(deploys=2, lead=200.0, cfr=0.0, recovery=None)
    c2024 = domain.classify(m, year=2024)
    # 2024: 15 days is weekly-monthly (medium); 200h is 1 week-1 month (medium); CFR 0%
    # nearest elite's 5%; recovery unknown and left out.
    assert c2024.per_metric == {
        "deployment_frequency": "medium",
        "lead_time": "medium",
        "change_failure_rate": "elite",
        "recovery_time": None,
    }
    assert c2024.cluster == "medium"
    c2021 = domain.classify(m, year=2021)
    # 2021: weekly-monthly is high; 200h falls between high (<= 1 week) and medium
    # (1-6 months) and lands in medium; CFR 0-15% elite. Lowest: medium.
    assert c2021.per_metric["deployment_frequency"] == "high"
    assert c2021.per_metric["lead_time"] == "medium"
    assert c2021.cluster == "medium"
    # No deployments at all: frequency is low, nothing else is known.
    none = domain.classify(metrics_of(deploys=0, lead=None, cfr=None, recovery=None))
    assert none.cluster == "low"
    assert "no production deployments in the window" in none.notes


def test_boundaries_of_the_2024_table() -> None:
    # Exactly daily is "between once per day and once per week" (high), not on demand.
    assert (
        domain.classify(metrics_of(deploys=30, lead=None, cfr=None, recovery=None)).per_metric[
            "deployment_frequency"
        ]
        == "high"
    )
    edge = domain.classify(metrics_of(deploys=31, lead=24.0, cfr=0.15, recovery=1.0))
    assert edge.per_metric == {
        "deployment_frequency": "elite",  # 30/31 days between deploys < 1
        "lead_time": "high",  # "less than one day" is strict
        "change_failure_rate": "high",  # halfway between medium 10% and high 20%: the better
        "recovery_time": "high",  # "less than one hour" is strict
    }


def test_the_history_classified(db: Database, history: History) -> None:
    with db.read() as session:
        overall = dora.metrics(session, now=NOW, days=7)
    # 2024: 8 deploys in 7 days (every 0.875 days: elite), lead 3h (elite), CFR 25% (nearest
    # high's 20%), recovery 1.5h (under a day: high) -> high.
    c2024 = domain.classify(overall, year=2024)
    assert c2024.per_metric == {
        "deployment_frequency": "elite",
        "lead_time": "elite",
        "change_failure_rate": "high",
        "recovery_time": "high",
    }
    assert c2024.cluster == "high"
    # 2019: CFR above 15% is low -> low overall.
    assert domain.classify(overall, year=2019).cluster == "low"


def test_malformed_tables_are_refused() -> None:
    good = json.loads((domain.resources.files("bot.domain") / domain.TABLE_FILE).read_text("utf-8"))
    broken = json.loads(json.dumps(good))
    del broken["years"]["2024"]["source"]
    with pytest.raises(ValueError, match="2024: a 'source' note is required"):
        domain.parse_tables(broken)
    broken = json.loads(json.dumps(good))
    broken["years"]["2021"]["lead_time"].reverse()
    with pytest.raises(ValueError, match="bands must be"):
        domain.parse_tables(broken)


def test_median() -> None:
    assert domain.median([]) is None
    assert domain.median([5.0, 1.0, 3.0]) == 3.0
    assert domain.median([4.0, 1.0, 3.0, 2.0]) == 2.5


# --- the terminal table --------------------------------------------------------------------


def test_cli_prints_the_table(
    db: Database,
    history: History,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    code = main(
        ["metrics", "--days", "7", "--at", NOW.isoformat(), "--config", str(EXAMPLE_CONFIG)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    lines = printed.splitlines()
    assert lines[0].startswith("DORA metrics, last 7 days to 2026-11-17 10:00 UTC")
    assert lines[1].split() == [
        "service", "deploys", "per", "day", "lead", "time", "CFR", "recovery", "cluster"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[3:] if line.strip()}
    overall = ["overall", "8", "1.14/day", "3.0h", "25.0%", "(2)", "1.5h", "(2)", "high"]
    assert rows["overall"] == overall
    assert rows["checkout"][:7] == ["checkout", "6", "6.00/week", "4.0h", "33.3%", "(2)", "1.5h"]
    # ledger: one deploy every 3.5 days is high (daily to weekly) by 2024.
    assert rows["ledger"] == ["ledger", "2", "2.00/week", "30m", "0.0%", "(0)", "-", "high"]
    assert rows["storefront"] == ["storefront", "0", "0.00/day", "-", "-", "-", "low"]
    assert "overall: high by the DORA 2024 table" in printed

    code = main(
        ["metrics", "--service", "checkout", "--days", "90", "--year", "2021",
         "--at", NOW.isoformat(), "--config", str(EXAMPLE_CONFIG)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "DORA metrics for checkout, last 90 days" in printed
    assert "checkout  " in printed and "overall " not in printed.splitlines()[3]
    assert "37.5% (3)" in printed and "5.0h" in printed and "2.5h (3)" in printed
    assert "DORA 2021" in printed


def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["metrics", "--days", "0"], ["metrics", "--year", "2023"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "invalid" in capsys.readouterr().err


# --- the weekly digest ---------------------------------------------------------------------


async def test_digest_job_posts_once_per_week(
    db: Database, history: History, bot: Any, slack: Any
) -> None:
    assert bot.runtime.clock.now() == NOW
    assert await weekly_digest(bot.runtime) is True
    assert await weekly_digest(bot.runtime) is False  # another replica, same hour: no second

    with db.read() as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == dora.DIGEST_KIND)
        ).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.key == "digest" and row.status == "pending"
    assert row.payload["channel"] == "#deploys"
    text = row.payload["text"]
    assert text.startswith("Weekly DORA digest: last 7 days to 2026-11-17")
    assert "Overall: 8 production deployments, lead time 3.0h, CFR 25.0%, recovery 1.5h" in text
    assert "high (2024 clusters)" in text
    blocks = row.payload["blocks"]
    assert blocks[0]["type"] == "header"
    assert any("checkout" in b.get("text", {}).get("text", "") for b in blocks[1:])

    # The outbox worker posts it to the default channel, blocks and all.
    await bot.send_outbox()
    posted = [m for m in slack.messages("#deploys") if m["text"].startswith("Weekly DORA")]
    assert len(posted) == 1
    assert posted[0]["blocks"][0]["type"] == "header"

    # A week later it is queued again.
    bot.runtime.clock.advance(days=7)
    assert await weekly_digest(bot.runtime) is True


def test_digest_job_is_registered_from_the_settings() -> None:
    settings = load_settings({"RELEASEBOT_DIGEST_DAY": "fri", "RELEASEBOT_DIGEST_HOUR": "17"})
    scheduler = build_scheduler()
    register_digest(scheduler, SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    job = scheduler.get_job(DIGEST_JOB_ID)
    assert job is not None
    assert job.coalesce is True and job.max_instances == 1
    # Tuesday 10:00 UTC -> Friday 17:00 UTC.
    fire = job.trigger.get_next_fire_time(None, NOW)
    assert fire == datetime(2026, 11, 20, 17, 0, tzinfo=UTC)

    defaults = load_settings({})
    assert (defaults.digest_day, defaults.digest_hour) == ("mon", 9)
    for bad in ({"RELEASEBOT_DIGEST_DAY": "someday"}, {"RELEASEBOT_DIGEST_HOUR": "24"}):
        with pytest.raises(ValueError):
            load_settings(bad)


def test_slack_message(db: Database, history: History) -> None:
    """What `/release metrics ledger 7` shows (handlers call `message(report(...))`)."""
    with db.read() as session:
        rows = dora.report(session, now=NOW, service="ledger", windows=(7,))
    reply = dora.message(rows, now=NOW)
    assert reply.text.startswith("DORA metrics for ledger, last 7 days")
    assert "ledger: 2 production deployments, lead time 30m, CFR 0.0%" in reply.text
    assert reply.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": reply.text.splitlines()[0]},
    }
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in reply.blocks)
