"""Baseline analysis through the app: a deploy whose error ratio doubles after it lands fails
its baseline check; the thread shows both medians, the change and the verdict with a link to
the chart, and the deployment page draws both windows as an inline SVG."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.domain.errors import ConfigError
from bot.scheduling import checks_tick
from bot.store.tables import Deployment
from integrations.checks.baseline import BaselineCheckRunner
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import BotFactory
from tests.fake_prometheus import URL, FakePrometheus, routed
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import SHA_A, deployment_status, encode, example_config_data
from tests.helpers import github_headers as signed

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
DEPLOYED = NOW.timestamp()
CHANNEL = "#checkout-deploys"
QUERY = 'sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))'


def wobble(t: float) -> float:
    """A little deterministic noise, so the samples are not all tied."""
    return ((int(t) // 30) % 5 - 2) * 0.0005


def doubling(query: str, t: float) -> float:
    """1 % errors before the deploy, 2 % after it."""
    return (0.02 if t > DEPLOYED else 0.01) + wobble(t)


def steady(query: str, t: float) -> float:
    return 0.01 + wobble(t)


def baseline_check(**overrides: Any) -> dict[str, Any]:
    settings = {"url": URL, "query": QUERY, "window": "10m", "step": "30s", "min_change": "10%"}
    return {"name": "errors-vs-before", "baseline": {**settings, **overrides}, "at": ["10m"]}


def config_with_baseline() -> Config:
    data = example_config_data()
    production = data["services"]["checkout"]["environments"][1]
    production["verify"] = [baseline_check()]
    production["on_verification_failure"] = "notify"
    return parse_config(data)


async def verify_a_deploy(
    bot_factory: BotFactory, slack: FakeSlackWebApi, key: str, series: Any
) -> tuple[str, list[str], str]:
    """Deploy SHA_A to production, run the baseline check 10 minutes later; returns the
    deployment's state, its thread and its dashboard page."""
    fake, clock = FakePrometheus(series), FrozenClock(NOW)
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=routed(fake, FakeEdge().transport),
        config=config_with_baseline(),
        environ={"PD_CHECKOUT_ROUTING_KEY": "pd-key"},
    )
    async with bot_factory(
        env={"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": key}, overrides=overrides
    ) as bot:
        body = encode(deployment_status("success", sha=SHA_A, deployment_id=1))
        answer = await bot.post("/webhooks/github", body, signed("deployment_status", body))
        assert answer.status_code == 202
        await bot.send_outbox()
        clock.advance(minutes=10)
        assert await checks_tick(bot.runtime) == 1
        await bot.send_outbox()
        with bot.runtime.db.read() as session:
            deployment = session.exec(select(Deployment)).one()
        page = (await bot.http.get(f"/deployments/{deployment.id}")).text
    windows = [(float(r.url.params["start"]), float(r.url.params["end"])) for r in fake.requests]
    assert windows == [(DEPLOYED, DEPLOYED + 600), (DEPLOYED - 600, DEPLOYED)]
    message = next(m for m in slack.messages(CHANNEL) if SHA_A[:7] in m["text"])
    thread = [m["text"] for m in slack.thread(CHANNEL, message["ts"])[1:]]
    return deployment.state, thread, page


async def test_an_error_ratio_that_doubles_fails_with_medians_change_chart_and_svg(
    bot_factory: BotFactory, slack: FakeSlackWebApi, app_private_key: str
) -> None:
    state, thread, page = await verify_a_deploy(bot_factory, slack, app_private_key, doubling)
    assert state == "verification_failed"
    line = next(text for text in thread if "*errors-vs-before*" in text)
    assert line.startswith(":x: *errors-vs-before*: median 0.02 after vs 0.01 before (+100%, p="), (
        line
    )
    assert "): fail, an increase is bad" in line
    assert re.search(
        r"\|query> · <https://releasebot.example/deployments/1#check-errors-vs-before\|chart>$",
        line,
    )
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'class="after"' in svg and 'class="before"' in svg
    assert re.search(r'points="4\.0,[\d.]+ ', svg)
    assert 'id="check-errors-vs-before"' in page


async def test_a_steady_error_ratio_is_inconclusive_and_passes(
    bot_factory: BotFactory, slack: FakeSlackWebApi, app_private_key: str
) -> None:
    state, thread, _ = await verify_a_deploy(bot_factory, slack, app_private_key, steady)
    assert state == "verified"
    line = next(text for text in thread if "*errors-vs-before*" in text)
    assert line.startswith(":white_check_mark: *errors-vs-before*: median 0.01 after vs 0.01")
    assert "inconclusive, no significant difference (p above 0.05)" in line


async def test_a_canary_is_compared_with_the_stable_series_over_the_same_window() -> None:
    def series(query: str, t: float) -> float:
        return (0.02 if "canary" in query else 0.01) + wobble(t)

    fake, clock = FakePrometheus(series), FrozenClock(NOW)
    client = httpx.AsyncClient(
        transport=routed(fake, httpx.MockTransport(lambda r: httpx.Response(404)))
    )
    runner = BaselineCheckRunner(client, clock=clock)
    check = baseline_check(
        query="errors{track='canary'}", compare="series", baseline_query="errors{track='stable'}"
    )
    result = await runner.run(check)
    await runner.aclose()
    assert not result.passed
    assert result.summary.startswith("median 0.02 after vs 0.01 before (+100%")
    assert [r.url.params["query"] for r in fake.requests] == [
        "errors{track='canary'}",
        "errors{track='stable'}",
    ]
    assert {(r.url.params["start"], r.url.params["end"]) for r in fake.requests} == {
        (f"{DEPLOYED - 600:.3f}", f"{DEPLOYED:.3f}")
    }


async def test_prometheus_down_fails_the_check_with_its_error() -> None:
    fake = FakePrometheus(steady)
    fake.down = True
    client = httpx.AsyncClient(
        transport=routed(fake, httpx.MockTransport(lambda r: httpx.Response(404)))
    )
    runner = BaselineCheckRunner(client, clock=FrozenClock(NOW))
    result = await runner.run(baseline_check())
    await runner.aclose()
    assert not result.passed
    assert result.summary == "Prometheus had an internal error: TSDB not ready"


def test_the_config_refuses_a_series_comparison_without_its_baseline_query() -> None:
    data = example_config_data()
    production = data["services"]["checkout"]["environments"][1]
    production["verify"] = [baseline_check(compare="series"), baseline_check(alpha=2)]
    production["verify"][1]["name"] = "other"
    try:
        parse_config(data)
    except ConfigError as error:
        problems = error.problems
    else:
        raise AssertionError("the config was accepted")
    where = "services.checkout.environments[1].verify"
    assert any(p.startswith(f"{where}[0].baseline.baseline_query: is required") for p in problems)
    assert any(p.startswith(f"{where}[1].baseline.alpha") for p in problems), problems
