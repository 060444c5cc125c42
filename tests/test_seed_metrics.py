"""Release-health metrics beside DORA: a hand-built history whose every figure is worked out
below, then the same figures in `/release metrics`, `releasebot metrics`, the weekly digest
and the dashboard's DORA page.

NOW is Tuesday 2026-11-17 10:00 UTC. "-4d+1h" is NOW - 4 days + 1 hour. "planned": a
`verification.planned` audit record (its verification began).

checkout (staging, then production)
  A   staging SA verified at -6d; production PA created -6d+3h, ran -6d+3h10m, verified,
      planned                                         -> waited 3h
  B   staging SB verified at -4d; production PB1 created -4d+1h, failed, never ran; PB2
      created -4d+2h, ran -4d+2h10m, verification_failed, planned
                                                      -> waited 1h (from the first attempt)
  C   staging SC verified at -3d; production PC created -3d+5h, ran -3d+5h10m, rolled back
      after verification (planned); staging SC2 verified again at -3d+6h (after: ignored)
                                                      -> waited 5h
  D   production only: PD created -1d, ran -1d+10m, rolled back with no verification
  A   again to production: PA2 created -1d+2h, ran -1d+2h10m, succeeded (no wait: not its
      first production deployment)
  E   staging SE ran -12h, verification_failed
  F   staging SF created -10h, failed, never ran
  O   staging SO verified at -10d-2h; production PO created -10d, ran -10d+10m, verified,
      planned                                         -> waited 2h (in 30 days, not 7)
  SLO measurements: -8d 90% left, -5d 50% left, -3d exhausted (-10%), -1d unknown
ledger (production only)
  L1  created -2d, ran -2d+10m, verified, planned
  L2  created -1d, ran -1d+5m, succeeded (no checks)

7 days
  checkout  verification 1/3 (PA; PB2, PC fail; PD never verified) = 33.3%
            waits 1h 3h 5h -> 3.0h (3)
            rollbacks PC PD = 2 -> 2.00 a week; of PA PB1 PB2 PC PD PA2 = 2/6 = 33.3%
            pipelines: ran SA PA SB PB2 SC PC SC2 PD SE PA2 = 10, failed PB1 SF = 2 -> 83.3%
            SLO 1/2 = 50.0% (the unknown one is left out)
  ledger    verification 1/1, no waits, 0 rollbacks of 2, pipelines 2/2, SLO n/a
  overall   verification 2/4 = 50.0%, 3.0h (3), 2.00 a week, 2/8 = 25.0%, 12/14 = 85.7%,
            SLO 50.0% (1/2)
30 days (checkout): + SO, PO: verification 2/4, waits 1 2 3 5 -> 2.5h (4), rollbacks
            2 / (30/7) = 0.47 a week, 2/7 = 28.6%, pipelines 12/14, SLO 2/3 = 66.7%
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.cli import main
from bot.domain import states
from bot.domain.seed_metrics import SeedMetrics, seed_cells
from bot.domain.slo import Budget
from bot.scheduling import weekly_digest
from bot.services import dora, seed_metrics, slo
from bot.services.production import Production
from bot.store.db import Database
from bot.store.tables import OutboxMessage
from tests.helpers import EXAMPLE_CONFIG
from tests.test_dora import NOW, History, ago, commit
from tests.test_slash_commands import Slash, shown

HOUR = 3600.0


def deploy(
    h: History,
    name: str,
    release: str,
    state: str,
    *,
    created: Any,
    ran: Any = None,
    finished: Any = None,
    environment: str = "production",
    planned: bool = False,
    attempt: int = 1,
) -> None:
    service = "ledger" if release.startswith("L") else "checkout"
    h.deploy(
        name,
        release=release,
        service=service,
        state=state,
        created=created,
        deployed=ran,
        finished=finished,
        environment=environment,
        attempt=attempt,
    )
    if planned:
        h.record("verification.planned", name, (ran or created) + timedelta(minutes=1), runs=1)


def measure(db: Database, at: Any, remaining: float | None) -> None:
    budget = (
        Budget.unknown(
            service="checkout", objective=99.9, window="30d", reason="no answer", measured_at=None
        )
        if remaining is None
        else Budget(
            service="checkout", objective=99.9, window="30d", known=True, remaining=remaining
        )
    )
    db.write(lambda s: slo.record(s, now=at, budget=budget))


@pytest.fixture
def history(db: Database) -> History:
    h = History(db)
    for name, service, made in (
        ("A", "checkout", ago(days=7)),
        ("B", "checkout", ago(days=5)),
        ("C", "checkout", ago(days=4)),
        ("D", "checkout", ago(days=2)),
        ("E", "checkout", ago(days=1)),
        ("F", "checkout", ago(days=1)),
        ("O", "checkout", ago(days=11)),
        ("L1", "ledger", ago(days=3)),
        ("L2", "ledger", ago(days=2)),
    ):
        h.release(name, service, [commit(name.lower(), made)], created=made)
    verified, staging = states.VERIFIED, "staging"
    at = ago  # NOW - days + hours + minutes, as the module's docstring writes times

    deploy(h, "SA", "A", verified, created=at(6, -1), ran=at(6, -0.5), finished=at(6),
           environment=staging)  # fmt: skip
    deploy(h, "PA", "A", verified, created=at(6, 3), ran=at(6, 3, 10), finished=at(6, 3, 30),
           planned=True)  # fmt: skip
    deploy(h, "SB", "B", verified, created=at(4, -1), ran=at(4, -0.5), finished=at(4),
           environment=staging)  # fmt: skip
    deploy(h, "PB1", "B", states.FAILED, created=at(4, 1), finished=at(4, 1, 5))
    deploy(h, "PB2", "B", states.VERIFICATION_FAILED, created=at(4, 2), ran=at(4, 2, 10),
           finished=at(4, 2, 40), planned=True, attempt=2)  # fmt: skip
    deploy(h, "SC", "C", verified, created=at(3, -1), ran=at(3, -0.5), finished=at(3),
           environment=staging)  # fmt: skip
    deploy(h, "PC", "C", states.ROLLED_BACK, created=at(3, 5), ran=at(3, 5, 10),
           finished=at(3, 7), planned=True)  # fmt: skip
    deploy(h, "SC2", "C", verified, created=at(3, 5, 20), ran=at(3, 5, 30), finished=at(3, 6),
           environment=staging, attempt=2)  # fmt: skip
    deploy(h, "PD", "D", states.ROLLED_BACK, created=at(1), ran=at(1, 0, 10), finished=at(1, 1))
    deploy(h, "PA2", "A", states.SUCCEEDED, created=at(1, 2), ran=at(1, 2, 10),
           finished=at(1, 2, 10), attempt=2)  # fmt: skip
    deploy(h, "SE", "E", states.VERIFICATION_FAILED, created=at(0, -12.5), ran=at(0, -12),
           finished=at(0, -11), environment=staging)  # fmt: skip
    deploy(h, "SF", "F", states.FAILED, created=at(0, -10), finished=at(0, -9.5),
           environment=staging)  # fmt: skip
    deploy(h, "SO", "O", verified, created=at(10, -3), ran=at(10, -2.5), finished=at(10, -2),
           environment=staging)  # fmt: skip
    deploy(h, "PO", "O", verified, created=at(10), ran=at(10, 0, 10), finished=at(10, 0, 30),
           planned=True)  # fmt: skip
    deploy(h, "L1", "L1", verified, created=at(2), ran=at(2, 0, 10), finished=at(2, 0, 30),
           planned=True)  # fmt: skip
    deploy(h, "L2", "L2", states.SUCCEEDED, created=at(1), ran=at(1, 0, 5), finished=at(1, 0, 5))
    for days, remaining in ((8, 0.9), (5, 0.5), (3, -0.1), (1, None)):
        measure(db, ago(days=days), remaining)
    return h


def by_name(rows: list[SeedMetrics]) -> dict[str | None, SeedMetrics]:
    return {row.service: row for row in rows}


def test_seven_days_by_hand(db: Database, history: History) -> None:
    with db.read() as session:
        rows = seed_metrics.report(
            session, now=NOW, days=7, services=["checkout", "ledger", "storefront"]
        )
    assert [row.service for row in rows] == [None, "checkout", "ledger", "storefront"]
    found = by_name(rows)
    checkout = found["checkout"]
    assert (checkout.verified, checkout.verifications) == (1, 3)
    assert checkout.promotion_median_seconds == 3 * HOUR and checkout.promotions == 3
    assert (checkout.rollbacks, checkout.deployments) == (2, 6)
    assert checkout.rollbacks_per_week == 2.0
    assert (checkout.pipeline_succeeded, checkout.pipeline_failed) == (10, 2)
    assert (checkout.slo_met, checkout.slo_measured) == (1, 2)
    assert seed_cells(checkout) == (
        "33.3% (1/3)", "3.0h (3)", "2.00", "33.3% (2/6)", "83.3% (10/12)", "50.0% (1/2)"
    )  # fmt: skip
    assert seed_cells(found["ledger"]) == (
        "100.0% (1/1)", "-", "0.00", "0.0% (0/2)", "100.0% (2/2)", "n/a"
    )  # fmt: skip
    assert seed_cells(found[None]) == (
        "50.0% (2/4)", "3.0h (3)", "2.00", "25.0% (2/8)", "85.7% (12/14)", "50.0% (1/2)"
    )  # fmt: skip
    assert seed_cells(found["storefront"]) == ("-", "-", "0.00", "-", "-", "n/a")


def test_thirty_days_and_one_service(db: Database, history: History) -> None:
    with db.read() as session:
        [checkout] = seed_metrics.report(session, now=NOW, days=30, service="checkout")
        [ledger] = seed_metrics.report(session, now=NOW, days=30, service="ledger")
        with pytest.raises(ValueError, match="between 1 and"):
            seed_metrics.report(session, now=NOW, days=0)
    assert checkout.service == "checkout"
    assert seed_cells(checkout) == (
        "50.0% (2/4)", "2.5h (4)", "0.47", "28.6% (2/7)", "85.7% (12/14)", "66.7% (2/3)"
    )  # fmt: skip
    assert seed_cells(ledger)[0] == "100.0% (1/1)" and seed_cells(ledger)[5] == "n/a"


def test_an_empty_history_and_a_production_scope(db: Database, history: History) -> None:
    with db.read() as session:
        # Long ago nothing happened: no figures, no division by zero.
        [quiet] = seed_metrics.report(session, now=ago(days=400), days=7)
        # With staging counted as production too, SA..SE are production deployments.
        both = Production(fallback=("production", "staging"))
        [wide] = seed_metrics.report(session, now=NOW, days=7, service="checkout", production=both)
    assert seed_cells(quiet) == ("-", "-", "0.00", "-", "-", "n/a")
    # Now every verification of A, B, C happens in "production": no wait is measured.
    assert wide.promotions == 0 and wide.promotion_median_seconds is None
    # SA SB SC SC2 verified, PA verified; SE and PB2 failed, PC rolled back after it.
    assert (wide.verified, wide.verifications) == (5, 8)


def test_the_terminal_table(
    db: Database,
    history: History,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    argv = ["metrics", "--days", "7", "--at", NOW.isoformat(), "--config", str(EXAMPLE_CONFIG)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("release health"))
    assert lines[head].split()[2:5] == ["overall", "checkout", "ledger"]
    table = {line.split("  ")[0]: line for line in lines[head + 2 : head + 8]}
    assert table["verification pass rate"].split()[3:7] == ["50.0%", "(2/4)", "33.3%", "(1/3)"]
    assert "3.0h (3)" in table["staging verified to production"]
    assert table["pipeline success rate"].split()[3:5] == ["85.7%", "(12/14)"]
    assert table["SLO compliance"].split()[2:6] == ["50.0%", "(1/2)", "50.0%", "(1/2)"]
    assert table["SLO compliance"].split()[-1] == "n/a"
    assert any(line.startswith("Release health: verification pass rate") for line in lines)


async def test_release_metrics_in_slack(history: History, slash: Slash) -> None:
    reply = shown(await slash("U0STRANGER", "metrics checkout 7"))
    assert "DORA metrics for checkout, last 7 days" in reply
    assert (
        "checkout: verification pass rate 33.3% (1/3), staging verified to production "
        "3.0h (3), rollbacks per week 2.00, rolled back 33.3% (2/6), pipeline success rate "
        "83.3% (10/12), SLO compliance 50.0% (1/2)." in reply
    )
    every = shown(await slash("U0STRANGER", "metrics 7"))
    assert "Overall: verification pass rate 50.0% (2/4)" in every
    assert "SLO compliance 50.0% (1/2)." in every
    table = next(line for line in every.splitlines() if line.startswith("release health"))
    columns = ["overall", "checkout", "ledger", "payments-batch", "search", "storefront"]
    assert table.split()[2:8] == columns  # every configured service


@pytest.fixture
def slash(gated_bot: Any, slack: Any, slack_server: Any) -> Slash:
    """`/release ...` typed in Slack, signed, into the app that answers before acking."""
    return Slash(gated_bot, slack, slack_server[1])


async def test_the_weekly_digest(db: Database, history: History, bot: Any) -> None:
    assert await weekly_digest(bot.runtime) is True
    with db.read() as session:
        [row] = session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == dora.DIGEST_KIND)
        ).all()
    text = row.payload["text"]
    assert "Overall: verification pass rate 50.0% (2/4), staging verified to production" in text
    assert "pipeline success rate 85.7% (12/14), SLO compliance 50.0% (1/2)." in text
    texts = [b.get("text", {}).get("text", "") for b in row.payload["blocks"]]
    assert any(t.startswith("```\nrelease health") for t in texts)


async def test_the_dashboard_page(history: History, bot: Any) -> None:
    # A service name as a CI payload could spell it: printed as text, never as markup.
    history.release("X", "<i>web</i>", None, created=ago(days=2))
    history.deploy("X", release="X", service="<i>web</i>", state=states.SUCCEEDED,
                   created=ago(days=2), deployed=ago(days=2, minutes=5))  # fmt: skip
    answer = await bot.http.get("/dora?days=30&bucket=day")
    assert answer.status_code == 200
    page = answer.text
    assert "<h2>Release health</h2>" in page
    assert '<th class="num">verification pass rate</th>' in page
    checkout = (
        '<tr><td>checkout</td><td class="num">50.0% (2/4)</td><td class="num">2.5h (4)</td>'
        '<td class="num">0.47</td><td class="num">28.6% (2/7)</td>'
        '<td class="num">85.7% (12/14)</td><td class="num">66.7% (2/3)</td></tr>'
    )
    assert checkout in page
    assert "<td>&lt;i&gt;web&lt;/i&gt;</td>" in page and "<i>web</i>" not in page
    # Overall: verification 2/4 + 1/1, pipelines 12/14 + 2/2 + 1/1 (X ran).
    assert '<tr><td>overall</td><td class="num">60.0% (3/5)</td>' in page
    assert '<td class="num">88.2% (15/17)</td>' in page
