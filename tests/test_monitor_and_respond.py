"""One bad release, watched and answered end to end: its error ratio doubles after it lands,
the baseline check fails it with both windows in the thread, whoever PagerDuty says is on
call now is mentioned, production rolls back, Grafana and Datadog get their markers, and the
next forward fix resolves the alert. Through the real app: signed GitHub webhooks, the
scheduler's check job, and fakes of Prometheus, PagerDuty (REST and Events), Grafana,
Datadog, GitHub and Slack at the edge."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_prometheus import URL, FakePrometheus
from tests.fakes import FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, example_config_data
from tests.helpers import github_headers as signed
from tests.test_baseline import QUERY, wobble
from tests.test_markers import MARKERS, SECRETS, Observability
from tests.test_respond import PD_TOKEN, POLICY, FakePagerDutyRest

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
CHANNEL = "#checkout-deploys"
SHA_C = "c0ffee5bd8fca8fcc58a9a2d6c842781e32a2150"


class World(Observability):
    """Grafana, Datadog, GitHub and PagerDuty Events (Observability), plus Prometheus and
    PagerDuty's REST API. The error ratio is 1 %, and 2 % while the bad release runs."""

    def __init__(self) -> None:
        super().__init__()
        self.prometheus = FakePrometheus(self.error_ratio)
        self.pagerduty_rest = FakePagerDutyRest()
        self.bad_from: float | None = None
        self.bad_until: float | None = None

    def error_ratio(self, query: str, t: float) -> float:
        bad = self.bad_from is not None and t > self.bad_from
        if self.bad_until is not None and t > self.bad_until:
            bad = False
        return (0.02 if bad else 0.01) + wobble(t)

    def _route(self, request: httpx.Request) -> httpx.Response:
        if self.prometheus.handles(request):
            return self.prometheus.handle(request)
        if request.url.host == "api.pagerduty.com":
            return self.pagerduty_rest.handle(request)
        return super()._route(request)


def config() -> Config:
    """checkout pages PagerDuty naming its escalation policy, marks Grafana and Datadog,
    and verifies production by comparing the 10 minutes after a deploy with those before;
    a failure rolls back."""
    data = example_config_data()
    checkout = data["services"]["checkout"]
    checkout["markers"] = {"grafana": MARKERS["grafana"], "datadog": MARKERS["datadog"]}
    checkout["oncall"]["pagerduty"]["escalation_policy"] = POLICY
    production = checkout["environments"][1]
    production["verify"] = [
        {
            "name": "errors-vs-before",
            "baseline": {
                "url": URL,
                "query": QUERY,
                "window": "10m",
                "step": "30s",
                "min_change": "10%",
            },
            "at": ["10m"],
        }
    ]
    production["on_verification_failure"] = "rollback"
    return parse_config(data)


async def deployed(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, signed("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


async def ten_minutes_later(bot: Bot, clock: FrozenClock) -> None:
    clock.advance(minutes=10)
    assert await checks_tick(bot.runtime) == 1
    await bot.send_outbox()


def state_of(bot: Bot, sha: str) -> str:
    with bot.runtime.db.read() as session:
        found = session.exec(
            select(Deployment).where(Deployment.sha == sha).order_by(Deployment.id.desc())  # type: ignore[union-attr]
        ).first()
    assert found is not None
    return found.state


def thread_of(slack: FakeSlackWebApi, sha: str) -> list[str]:
    message = next(m for m in slack.messages(CHANNEL) if sha[:7] in m["text"])
    return [m["text"] for m in slack.thread(CHANNEL, message["ts"])[1:]]


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(row.details) for row in rows]


async def test_a_release_that_doubles_errors_is_caught_rolled_back_and_fixed_forward(
    bot_factory: BotFactory, slack: FakeSlackWebApi, app_private_key: str
) -> None:
    world, clock = World(), FrozenClock(NOW)
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=world.transport,
        config=config(),
        environ={**SECRETS, "PAGERDUTY_API_TOKEN": PD_TOKEN},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as bot:
        await deployed(bot, SHA_A, 1)  # a good release: the ratio holds at 1 %
        await ten_minutes_later(bot, clock)
        assert state_of(bot, SHA_A) == "verified"

        clock.advance(hours=1)
        world.bad_from = clock.now().timestamp()
        await deployed(bot, SHA_B, 2)  # the bad one: 2 % from the moment it lands
        await ten_minutes_later(bot, clock)

        # Baseline analysis fails it, showing both windows' medians, the change and the chart.
        assert state_of(bot, SHA_B) in {"verification_failed", "rolling_back"}
        thread = thread_of(slack, SHA_B)
        verdict = next(line for line in thread if "*errors-vs-before*" in line)
        assert verdict.startswith(":x: *errors-vs-before*: median 0.02 after vs 0.01 before")
        assert (
            "(+100%" in verdict and "fail, an increase is bad" in verdict and "|chart>" in verdict
        )

        # Whoever PagerDuty has on call now is mentioned; the page went out.
        failure = next(line for line in thread if "verification failed" in line)
        assert failure.startswith(":rotating_light: <@U0SRE1> verification failed")
        [trigger] = [e for e in world.edge.pagerduty.events if e["event_action"] == "trigger"]

        # Production rolls back by policy: the deploy workflow is dispatched with the good sha.
        assert state_of(bot, SHA_B) == "rolling_back"
        [dispatch] = [
            json.loads(r.content)
            for r in world.edge.github.requests
            if r.url.path.endswith("/dispatches")
        ]
        assert SHA_A in json.dumps(dispatch)

        # Grafana and Datadog were marked: the deploys, the failed verification, the rollback.
        texts = [a.get("text", "") for a in world.grafana.annotations.values()]
        bad = f"checkout {SHA_B[:12]} to production"
        assert f"Verification failed: {bad}\nVerification failed: errors-vs-before" in texts
        assert (
            f"Rollback: {bad}\nRolling back to {SHA_A[:12]}: verification failed: "
            + ("errors-vs-before")
            in texts
        )
        titles = {e["title"]: e["alert_type"] for e in world.datadog.events}
        assert titles[f"Verification failed: {bad}"] == "error"
        assert f"Rollback: {bad}" in titles

        # A forward fix lands before the restored version reports back: it verifies (the
        # ratio falls back to 1 %) and resolves the alert the bad release raised.
        clock.advance(minutes=20)
        world.bad_until = clock.now().timestamp()
        await deployed(bot, SHA_C, 3)
        await ten_minutes_later(bot, clock)
        assert state_of(bot, SHA_C) == "verified"
        [resolve] = [e for e in world.edge.pagerduty.events if e["event_action"] == "resolve"]
        assert resolve["dedup_key"] == trigger["dedup_key"]
        [resolved] = audited(bot, "incident.resolved")
        assert resolved["by"] == "forward_fix"
