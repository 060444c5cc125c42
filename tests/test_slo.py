"""SLOs and error budgets through the app: releasebot measures a service's budget (fake
Prometheus answering like the real API) before its gate decides and before automatic
promotion; an exhausted budget holds automatic promotion (the staging message says why)
and blocks the production gate for all but break-glass; a low one asks for what
`by_error_budget` requires; an unknown one applies the strictest rule and says so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.domain.errors import ConfigError
from bot.domain.gates import requirement_for
from bot.domain.slo import Budget, band_threshold, budget_windows, burn_rate
from bot.scheduling import checks_tick
from integrations.checks.budget import BurnRateCheckRunner, PrometheusBudget
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_prometheus import URL, FakePrometheus, routed
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import example_config_data
from tests.slackflow import CHANNEL, click, gated_env, request_gate, the_gate, told
from tests.test_slash_commands import MEDIUM, Slash, audit_of, deploy_staging, deployments, shown

SHA_C = "1234567890abcdef1234567890abcdef12345678"
GOOD = 'sum(rate(http_requests_total{job="checkout",code!~"5.."}[$window]))'
TOTAL = 'sum(rate(http_requests_total{job="checkout"}[$window]))'
SRE_RULE = [{"approvers": ["S0SREGRPS"], "count": 1}]


def slo_config(**by_error_budget: Any) -> Config:
    data = example_config_data()
    checkout = data["services"]["checkout"]
    checkout["slo"] = {"url": URL, "good": GOOD, "total": TOTAL, "objective": 99.9, "window": "30d"}
    checkout["environments"][1]["gate"]["by_error_budget"] = by_error_budget or {
        "exhausted": "blocked",
        "below_25_percent": {"require": SRE_RULE},
    }
    return parse_config(data)


@pytest.fixture
def prometheus() -> FakePrometheus:
    return FakePrometheus()


@pytest.fixture
def by_error_budget() -> dict[str, Any]:
    """The production gate's `by_error_budget` (a test parametrizes its own)."""
    return {"exhausted": "blocked", "below_25_percent": {"require": SRE_RULE}}


@pytest.fixture
async def bot(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: FakeEdge,
    prometheus: FakePrometheus,
    app_private_key: str,
    by_error_budget: dict[str, Any],
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=routed(prometheus, edge.transport),
        environ={},
        config=slo_config(**by_error_budget),
    )
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as running:
        yield running


@pytest.fixture
def slash(bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]) -> Slash:
    return Slash(bot, slack, slack_server[1])


def spent(prometheus: FakePrometheus, ratio_30d: float) -> None:
    """Errors over 30 days at `ratio_30d` (the budget is 0.001), burning hard right now."""
    prometheus.ratios = {"30d": ratio_30d, "1h": 0.02, "5m": 0.03, "6h": 0.008, "30m": 0.01}


def staging_message(slack: FakeSlackWebApi) -> dict[str, Any]:
    return [m for m in slack.messages(CHANNEL) if "staging" in m["text"]][-1]


async def test_an_exhausted_budget_holds_promotion_and_blocks_the_gate(
    bot: Bot,
    slack: FakeSlackWebApi,
    prometheus: FakePrometheus,
    clock: FrozenClock,
    github: Any,
    slash: Slash,
) -> None:
    spent(prometheus, 0.0015)  # 150 % of the budget spent
    await deploy_staging(bot, SHA_C)
    await checks_tick(bot.runtime)
    clock.advance(seconds=30)
    await checks_tick(bot.runtime)
    await bot.send_outbox()

    # staging verified, then the budget was measured: no automatic promotion
    staging = next(d for d in deployments(bot) if d.environment == "staging")
    assert staging.state == "verified"
    assert not [d for d in deployments(bot) if d.environment == "production"]
    queries = [r.url.params["query"] for r in prometheus.requests]
    assert sorted(q.split("[")[1].split("]")[0] for q in queries[:5]) == sorted(
        budget_windows("30d")
    )
    assert queries[0].startswith("1 - ((sum(rate(http_requests_total{") and "[30d]" in queries[0]
    thread = slack.thread(CHANNEL, staging_message(slack)["ts"])
    note = thread[-1]["text"]
    assert "Not promoted to production automatically: checkout's error budget is exhausted" in note
    assert "-50.0% left" in note and "automatic promotion waits until it recovers" in note
    assert any("Measuring the error budget before promoting on" in m["text"] for m in thread)
    blocks = json.dumps(staging_message(slack)["blocks"])
    assert "*Error budget*" in blocks and "30d error budget (objective 99.9%) exhausted" in blocks
    # when it was measured: the budget is read again only before a gate or a promotion
    assert f"measured {clock.now():%Y-%m-%d %H:%M} UTC" in blocks
    assert (
        "burn 1h 20\\u00d7, 5m 30\\u00d7" in blocks and "burning fast: 1h/5m above 14.4" in blocks
    )
    [held] = audit_of(bot, "release.promotion_held")
    assert "error budget is exhausted" in held["reason"]

    # the production gate waits for a fresh measurement, then only break-glass passes
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.status == "pending"
    assert gate.requirement["mode"] == "blocked"
    assert gate.requirement["budget"] == "error budget exhausted"
    assert gate.progress == "error budget exhausted: blocked, only break-glass can pass this gate"
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "error budget exhausted: only break-glass can pass this gate" in told(slack, "U0RM1")
    assert the_gate(bot).status == "pending"
    measured = audit_of(bot, "slo.measured")
    assert len(measured) == 2 and measured[-1]["remaining"] == pytest.approx(-0.5)

    # the budget shows in /release status and on the dashboard
    status = shown(await slash("U0RM1", "status checkout"))
    assert "30d error budget (objective 99.9%) exhausted (-50.0% left)" in status
    assert f"measured {clock.now():%Y-%m-%d %H:%M} UTC" in status
    page = (await bot.http.get(f"/deployments/{gate.deployment_id}")).text
    assert "<dt>Error budget</dt>" in page and "exhausted (-50.0% left)" in page


async def test_a_low_budget_asks_for_what_by_error_budget_requires(
    bot: Bot, slack: FakeSlackWebApi, prometheus: FakePrometheus, github: Any
) -> None:
    spent(prometheus, 0.0009)  # 10 % of the budget left
    github.compare_files = MEDIUM  # medium risk: one release manager, by the gate's require
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.requirement["budget"] == "error budget below 25%"
    assert gate.requirement["rules"] == [{"approvers": ["S0SREGRPS"], "count": 1}]
    await click(bot, "U0RM1", "release_approve", gate.id or 0)  # a release manager: not enough
    assert the_gate(bot).status == "pending"
    await click(bot, "U0SRE1", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"


async def test_before_the_measurement_the_gate_waits_and_says_so(
    bot: Bot, prometheus: FakePrometheus, github: Any
) -> None:
    spent(prometheus, 0.0)
    github.compare_files = MEDIUM
    await request_gate(bot)
    # measured (all good): the gate's own rule applies, with no budget note
    gate = the_gate(bot)
    assert gate.requirement["mode"] == "quorum" and "budget" not in gate.requirement
    assert gate.requirement["rules"] == [{"approvers": ["S0RELMGRS"], "count": 1}]


async def test_prometheus_down_means_an_unknown_budget_and_the_strictest_rule(
    bot: Bot, slack: FakeSlackWebApi, prometheus: FakePrometheus, github: Any
) -> None:
    prometheus.down = True
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.requirement["mode"] == "blocked"
    assert gate.requirement["budget"] == "error budget unknown: the strictest rule applies"
    [measured] = audit_of(bot, "slo.measured")
    assert measured["known"] is False
    assert measured["reason"] == (
        "Prometheus could not be asked: Prometheus: Prometheus had an internal error: "
        "TSDB not ready"
    )
    message = json.dumps([m for m in slack.messages(CHANNEL) if "production" in m["text"]][-1])
    assert "error budget (objective 99.9%) unknown: Prometheus could not be asked" in message
    assert "error budget unknown: the strictest rule applies: blocked, only break-glass" in message


@pytest.mark.parametrize("by_error_budget", [{"exhausted": "blocked", "unknown": "allow"}])
async def test_unknown_allow_lets_the_gate_be_as_if_the_budget_were_fine(
    bot: Bot, prometheus: FakePrometheus, github: Any, by_error_budget: dict[str, Any]
) -> None:
    prometheus.down = True
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.requirement["mode"] == "quorum" and "budget" not in gate.requirement


# --- the rules, without the app ---------------------------------------------------------------


def test_budget_and_burn_rates_from_error_ratios() -> None:
    ratios = {"30d": 0.0004, "1h": 0.0143, "5m": 0.02, "6h": 0.001, "30m": None}
    budget = Budget.from_ratios(service="checkout", objective=99.9, window="30d", ratios=ratios)
    assert budget.remaining == pytest.approx(0.6)
    assert budget.burn["1h"] == pytest.approx(14.3) and budget.burn["30m"] == 0
    assert budget.firing() == []  # 5m burns at 20, but 1h stays under 14.4
    assert burn_rate(0.0015, 99.9) == pytest.approx(1.5)
    assert budget.band(["exhausted", "below_25_percent", "below_50_percent"]) is None
    assert Budget.from_dict(budget.to_dict()) == budget
    assert (band_threshold("below_25_percent"), band_threshold("exhausted")) == (0.25, 0.0)
    assert budget.describe().startswith("60.0% of the 30d error budget (objective 99.9%) left")


def test_the_stricter_of_risk_and_budget_wins() -> None:
    gate = slo_config().services["checkout"].environments[1].gate
    assert gate is not None
    low = Budget.from_ratios(service="c", objective=99.9, window="30d", ratios={"30d": 0.0009})
    fine = Budget.from_ratios(service="c", objective=99.9, window="30d", ratios={"30d": 0.0})
    assert requirement_for(gate, "low", fine).mode == "auto_approve"
    sre = requirement_for(gate, "low", low)  # auto-approve at low risk, but the budget is low
    assert (sre.mode, sre.describe()) == ("quorum", "1 from S0SREGRPS (error budget below 25%)")
    high = requirement_for(gate, "high", low)  # the risk's two rules outnumber the budget's
    assert high.seats == 2 and high.budget is None
    assert requirement_for(gate, "critical", low).describe() == (
        "blocked (critical risk): only break-glass can pass"
    )


async def test_the_burn_rate_check_fails_only_when_both_windows_burn(
    prometheus: FakePrometheus,
) -> None:
    client = httpx.AsyncClient(
        transport=routed(prometheus, httpx.MockTransport(lambda r: httpx.Response(404)))
    )
    runner = BurnRateCheckRunner(PrometheusBudget(client))
    config = slo_config().services["checkout"].model_dump(mode="json")
    check = {
        "name": "burn",
        "burn_rate": {"window": "1h", "short_window": "5m", "max": 14.4, "slo": config["slo"]},
        "at": ["5m"],
    }
    prometheus.ratios = {"1h": 0.02, "5m": 0.03}
    burning = await runner.run(check)
    prometheus.ratios = {"1h": 0.02, "5m": 0.001}  # the spike is over
    calm = await runner.run(check)
    await runner.aclose()
    assert not burning.passed
    assert burning.summary == "burn rate 20× over 1h, 30× over 5m: both above max 14.4"
    assert calm.passed and calm.summary.startswith("burn rate 20× over 1h, 1× over 5m")


def test_the_config_needs_an_slo_for_budget_gates_and_burn_rate_checks() -> None:
    data = example_config_data()
    production = data["services"]["checkout"]["environments"][1]
    production["gate"]["by_error_budget"] = {"exhausted": "blocked"}
    production["verify"].append({"name": "burn", "burn_rate": {"max": 10}, "at": ["5m"]})
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    where = "services.checkout.environments[1]"
    assert f"{where}.gate.by_error_budget: needs the service's slo" in "\n".join(
        raised.value.problems
    )
    assert any(p.startswith(f"{where}.verify[2].burn_rate: needs") for p in raised.value.problems)
    data["services"]["checkout"]["slo"] = {
        "url": URL,
        "good": "x",
        "total": TOTAL,
        "objective": 99.9,
    }
    with pytest.raises(ConfigError) as again:
        parse_config(data)
    assert any("slo.good: must contain $window" in p for p in again.value.problems)
