"""Responding well when a deploy goes bad: on-call as PagerDuty has it now is mentioned, the
alert closes when any later deploy verifies (a forward fix too, under `notify` too),
Opsgenie is paged in the account's region, and an approver can skip verification in an
emergency. Through the real app: signed webhooks and clicks, fake PagerDuty (REST and
Events), fake Opsgenie and fake Slack at the edge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, load_config
from bot.config.services import OpsgenieOncall, PagerDutyOncall
from bot.scheduling import checks_tick, gate_sweep
from bot.services import dora
from bot.store.tables import AuditEvent, CheckRun, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import EXAMPLE_CONFIG, SHA_A, SHA_B, deployment_status, encode, github_headers
from tests.slackflow import buttons, click, gated_env, request_gate, submit_reason, told

CHANNEL = "#checkout-deploys"
SHA_C = "c0ffee5bd8fca8fcc58a9a2d6c842781e32a2150"
POLICY = "PCHK0UT"
PD_TOKEN = "pd-rest-token-s3cret"
ROUTING_KEY = "pd-checkout-routing-key"
GENIE_KEY = "genie-key-s3cret"


class FakePagerDutyRest:
    """PagerDuty's REST API `GET /oncalls`: the on-calls of one escalation policy, as
    PagerDuty answers with `include[]=users` (full user records, e-mails included)."""

    def __init__(self) -> None:
        self.oncalls: list[tuple[int, str]] = [(1, "sam@acme.example"), (2, "rita@acme.example")]
        self.status = 200
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Token token={PD_TOKEN}":
            return httpx.Response(
                401, json={"error": {"message": "Unauthorized", "code": 2006, "errors": []}}
            )
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "Internal Error"}})
        policy = request.url.params.get("escalation_policy_ids[]")
        entries = [
            {
                "escalation_policy": {"id": policy, "type": "escalation_policy_reference"},
                "escalation_level": level,
                "schedule": {"id": "PSCHED1", "type": "schedule_reference"},
                "user": {
                    "id": f"PUSER{index}",
                    "type": "user",
                    "name": email.split("@")[0].title(),
                    "email": email,
                },
                "start": "2026-12-01T09:00:00Z",
                "end": "2026-12-08T09:00:00Z",
            }
            for index, (level, email) in enumerate(self.oncalls)
        ]
        return httpx.Response(
            200, json={"oncalls": entries, "limit": 25, "offset": 0, "more": False, "total": None}
        )


class FakeOpsgenie:
    """Opsgenie's Alert API: creates and closes alerts (202 with a requestId)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"GenieKey {GENIE_KEY}":
            return httpx.Response(
                401, json={"message": "Could not authenticate", "took": 0.0, "requestId": "x"}
            )
        return httpx.Response(
            202,
            json={
                "result": "Request will be processed",
                "took": 0.107,
                "requestId": f"req-{len(self.requests)}",
            },
        )

    def calls(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(host, path, query, body) of each call."""
        return [
            (
                r.url.host,
                r.url.raw_path.decode().split("?")[0],  # as sent: the alias percent-encoded
                r.url.query.decode(),
                json.loads(r.content),
            )
            for r in self.requests
        ]


class Outside:
    """FakeEdge, with PagerDuty's REST API and Opsgenie (both regions, and a proxy)."""

    def __init__(self) -> None:
        self.edge = FakeEdge()
        self.rest = FakePagerDutyRest()
        self.opsgenie = FakeOpsgenie()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "api.pagerduty.com":
            return self.rest.handle(request)
        if "opsgenie" in host:
            return self.opsgenie.handle(request)
        handled: httpx.Response = self.edge.transport.handle_request(request)
        return handled


@pytest.fixture
def outside() -> Outside:
    return Outside()


def configured(
    *,
    policy: str = "notify",
    pagerduty: PagerDutyOncall | None = None,
    opsgenie: OpsgenieOncall | None = None,
) -> Config:
    """The example config, with checkout's on-call and its production failure policy."""
    config = load_config(EXAMPLE_CONFIG)
    checkout = config.services["checkout"]
    staging, production = checkout.environments
    production = production.model_copy(update={"on_verification_failure": policy})
    oncall = checkout.oncall
    assert oncall is not None
    if pagerduty is not None or opsgenie is not None:
        oncall = oncall.model_copy(update={"pagerduty": pagerduty, "opsgenie": opsgenie})
    checkout = checkout.model_copy(update={"environments": [staging, production], "oncall": oncall})
    return config.model_copy(update={"services": {**config.services, "checkout": checkout}})


def paged_by_pagerduty(escalation_policy: str | None = POLICY) -> PagerDutyOncall:
    return PagerDutyOncall(
        routing_key_env="PD_CHECKOUT_ROUTING_KEY", escalation_policy=escalation_policy
    )


def overrides(clock: FrozenClock, outside: Outside, config: Config, **environ: str) -> Overrides:
    return Overrides(
        clock=clock,
        config=config,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=outside.transport,
        environ={"PD_CHECKOUT_ROUTING_KEY": ROUTING_KEY, **environ},
    )


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, outside: Outside, app_private_key: str
) -> AsyncIterator[Bot]:
    """checkout pages PagerDuty and names its escalation policy; production notifies."""
    config = configured(pagerduty=paged_by_pagerduty())
    chosen = overrides(clock, outside, config, PAGERDUTY_API_TOKEN=PD_TOKEN)
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=chosen) as running:
        yield running


async def deploy(bot: Bot, sha: str, deployment_id: int) -> None:
    body = encode(deployment_status("success", sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()


async def checks_due(bot: Bot) -> int:
    ran = await checks_tick(bot.runtime)
    await bot.send_outbox()
    return ran


async def verify_fully(bot: Bot, clock: FrozenClock) -> None:
    """Walk the clock through the example's check offsets (0s, 1m, 5m, 15m)."""
    for minutes in (0, 1, 4, 10):
        clock.advance(minutes=minutes)
        await checks_due(bot)


async def fail_verification(bot: Bot, outside: Outside, sha: str, deployment_id: int) -> None:
    await deploy(bot, sha, deployment_id)
    outside.edge.health.queued = [500]
    await checks_due(bot)
    assert deployment(bot, sha).state == "verification_failed"


def deployment(bot: Bot, sha: str) -> Deployment:
    with bot.runtime.db.read() as session:
        return session.exec(
            select(Deployment).where(Deployment.sha == sha).order_by(Deployment.id.desc())  # type: ignore[union-attr]
        ).first()  # type: ignore[return-value]


def message_of(slack: FakeSlackWebApi, sha: str) -> dict[str, Any]:
    return next(m for m in slack.messages(CHANNEL) if sha[:7] in m["text"])


def thread_of(slack: FakeSlackWebApi, sha: str) -> list[str]:
    return [m["text"] for m in slack.thread(CHANNEL, message_of(slack, sha)["ts"])[1:]]


def audit_details(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(r.details) for r in rows]


# --- (a) who is on call now ----------------------------------------------------------------


async def test_a_failed_verification_mentions_who_is_on_call_now_and_a_forward_fix_resolves_it(
    bot: Bot, slack: FakeSlackWebApi, outside: Outside, clock: FrozenClock
) -> None:
    await deploy(bot, SHA_A, 1)
    await verify_fully(bot, clock)
    clock.advance(hours=1)
    await fail_verification(bot, outside, SHA_B, 2)
    bad = deployment(bot, SHA_B)

    failure = next(r for r in thread_of(slack, SHA_B) if "verification failed" in r)
    assert failure.startswith(":rotating_light: <@U0SRE1> verification failed: *health*")
    assert "<@U0RM1>" not in failure  # rita is the second escalation level, not paged first
    assert "S0ONCALL1" not in failure  # the fixed group is only the fallback
    [asked] = outside.rest.requests
    assert asked.url.path == "/oncalls"
    assert asked.url.params.get_list("escalation_policy_ids[]") == [POLICY]
    assert asked.url.params["earliest"] == "true"
    assert asked.url.params.get_list("include[]") == ["users"]
    assert asked.headers["accept"] == "application/json"
    lookups = slack.calls_to("users.lookupByEmail")
    assert [c.params["email"] for c in lookups] == ["sam@acme.example"]
    [trigger] = [e for e in outside.edge.pagerduty.events if e["event_action"] == "trigger"]
    assert trigger["dedup_key"] == f"releasebot/checkout/production/{bad.id}"

    clock.advance(minutes=20)  # the notify policy leaves it running; a fix goes out
    await deploy(bot, SHA_C, 3)
    assert deployment(bot, SHA_B).state == "verification_failed"
    await checks_due(bot)
    assert [e for e in outside.edge.pagerduty.events if e["event_action"] == "resolve"] == []
    await verify_fully(bot, clock)
    assert deployment(bot, SHA_C).state == "verified"

    [resolve] = [e for e in outside.edge.pagerduty.events if e["event_action"] == "resolve"]
    assert resolve["dedup_key"] == trigger["dedup_key"]
    [resolved] = audit_details(bot, "incident.resolved")
    assert resolved["by"] == "forward_fix" and resolved["recovery_seconds"] == (20 + 15) * 60
    assert resolved["restored_by"] == deployment(bot, SHA_C).id

    clock.advance(hours=1)  # a further good deploy resolves nothing twice
    await deploy(bot, SHA_A, 4)
    await verify_fully(bot, clock)
    assert len([e for e in outside.edge.pagerduty.events if e["event_action"] == "resolve"]) == 1


@pytest.mark.parametrize("trouble", ["pagerduty down", "nobody in slack", "token unset"])
async def test_the_on_call_group_is_mentioned_when_pagerduty_cannot_say(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    outside: Outside,
    clock: FrozenClock,
    trouble: str,
) -> None:
    config = configured(pagerduty=paged_by_pagerduty())
    secrets = {} if trouble == "token unset" else {"PAGERDUTY_API_TOKEN": PD_TOKEN}
    if trouble == "pagerduty down":
        outside.rest.status = 503
    if trouble == "nobody in slack":
        outside.rest.oncalls = [(1, "contractor@elsewhere.example")]
    async with bot_factory(overrides=overrides(clock, outside, config, **secrets)) as bot:
        await fail_verification(bot, outside, SHA_A, 1)
        failure = next(r for r in thread_of(slack, SHA_A) if "verification failed" in r)
    assert failure.startswith(":rotating_light: <!subteam^S0ONCALL1> verification failed")
    assert bool(outside.rest.requests) is (trouble != "token unset")
    assert all(PD_TOKEN not in r for r in thread_of(slack, SHA_A))


async def test_without_an_escalation_policy_pagerduty_is_not_asked(
    bot_factory: BotFactory, slack: FakeSlackWebApi, outside: Outside, clock: FrozenClock
) -> None:
    config = configured(pagerduty=paged_by_pagerduty(escalation_policy=None))
    chosen = overrides(clock, outside, config, PAGERDUTY_API_TOKEN=PD_TOKEN)
    async with bot_factory(overrides=chosen) as bot:
        await fail_verification(bot, outside, SHA_A, 1)
        failure = next(r for r in thread_of(slack, SHA_A) if "verification failed" in r)
    assert "<!subteam^S0ONCALL1>" in failure
    assert outside.rest.requests == []


def test_an_escalation_policy_id_is_checked_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="is not a PagerDuty escalation policy id"):
        PagerDutyOncall(routing_key_env="PD_KEY", escalation_policy="checkout on-call")


# --- (b) rollback policy: the restored version resolves, once ------------------------------


async def test_under_rollback_the_restored_version_resolves_the_alert_once(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    outside: Outside,
    clock: FrozenClock,
    app_private_key: str,
) -> None:
    config = configured(policy="rollback", pagerduty=paged_by_pagerduty())
    chosen = overrides(clock, outside, config, PAGERDUTY_API_TOKEN=PD_TOKEN)
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=chosen) as bot:
        await deploy(bot, SHA_A, 1)
        await verify_fully(bot, clock)
        await deploy(bot, SHA_B, 2)
        outside.edge.health.queued = [500]
        await checks_due(bot)
        assert deployment(bot, SHA_B).state == "rolling_back"
        clock.advance(minutes=2)
        await deploy(bot, SHA_A, 3)  # the pipeline restores the good version
        await verify_fully(bot, clock)
        clock.advance(hours=1)
        await deploy(bot, SHA_C, 4)  # then the fix goes out
        await verify_fully(bot, clock)
        [resolved] = audit_details(bot, "incident.resolved")
    assert resolved["by"] == "rollback"
    resolves = [e for e in outside.edge.pagerduty.events if e["event_action"] == "resolve"]
    assert len(resolves) == 1


# --- (c) Opsgenie, in the account's region -------------------------------------------------


@pytest.mark.parametrize(
    ("region", "api_url", "host"),
    [
        ("eu", None, "api.eu.opsgenie.com"),
        ("us", None, "api.opsgenie.com"),
        ("eu", "https://opsgenie-proxy.acme.example", "opsgenie-proxy.acme.example"),
    ],
)
async def test_a_failed_verification_pages_opsgenie_and_the_forward_fix_closes_the_alert(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    outside: Outside,
    clock: FrozenClock,
    region: str,
    api_url: str | None,
    host: str,
) -> None:
    config = configured(
        opsgenie=OpsgenieOncall(api_key_env="OG_CHECKOUT_KEY", region=region)  # type: ignore[arg-type]
    )
    chosen = overrides(clock, outside, config, OG_CHECKOUT_KEY=GENIE_KEY)
    env = {"OPSGENIE_API_URL": api_url}
    async with bot_factory(env=env, overrides=chosen) as bot:
        await fail_verification(bot, outside, SHA_A, 1)
        bad = deployment(bot, SHA_A)
        clock.advance(minutes=30)
        await deploy(bot, SHA_B, 2)
        await verify_fully(bot, clock)
        assert deployment(bot, SHA_B).state == "verified"
    alias = f"releasebot/checkout/production/{bad.id}"
    opened, closed = [c for c in outside.opsgenie.calls() if c[3].get("priority") != "P5"]
    assert opened[:2] == (host, "/v2/alerts")
    assert opened[3]["alias"] == alias and opened[3]["priority"] == "P1"
    assert "verification failed" in opened[3]["message"]
    assert closed[0] == host
    assert closed[1] == "/v2/alerts/releasebot%2Fcheckout%2Fproduction%2F1/close"
    assert closed[2] == "identifierType=alias"
    assert "recovered" in closed[3]["note"]
    assert all(
        r.headers["authorization"] == f"GenieKey {GENIE_KEY}" for r in outside.opsgenie.requests
    )
    assert outside.edge.pagerduty.events == []


# --- (d) skip verification -----------------------------------------------------------------


async def test_an_approver_skips_verification_with_a_reason_in_an_emergency(
    bot: Bot, slack: FakeSlackWebApi, outside: Outside, clock: FrozenClock
) -> None:
    await deploy(bot, SHA_A, 1)
    deployment_id = deployment(bot, SHA_A).id
    assert deployment_id is not None
    assert "release_skip_verification" in buttons(message_of(slack, SHA_A))

    await click(bot, "U0STRANGER", "release_skip_verification", deployment_id)
    await submit_reason(bot, slack, "U0STRANGER", "I am in a hurry")
    assert "only S0RELMGRS, S0SREGRPS may skip verification checkout" in told(slack, "U0STRANGER")
    assert deployment(bot, SHA_A).state == "verifying"
    [refused] = audit_details(bot, "release.action_refused")
    assert refused["action"] == "skip_verification"

    await click(bot, "U0RM1", "release_skip_verification", deployment_id)
    modal = slack.opened_views()[-1]["view"]
    assert modal["callback_id"] == "release_skip_verification_modal"
    answer = await submit_reason(bot, slack, "U0RM1", "   ")
    assert answer == {
        "response_action": "errors",
        "errors": {
            "reason": "A reason is required; type why in this box, then submit again "
            "(it is recorded)"
        },
    }
    assert deployment(bot, SHA_A).state == "verifying"

    await submit_reason(bot, slack, "U0RM1", "checkout is down, hotfix <!channel> & more")
    assert deployment(bot, SHA_A).state == "verified"
    assert "skipped" in told(slack, "U0RM1")
    [skipped] = audit_details(bot, "verification.skipped")
    assert skipped == {
        "reason": "checkout is down, hotfix <!channel> & more",
        "cancelled_runs": 6,
    }
    line = next(r for r in thread_of(slack, SHA_A) if "skipped verification" in r)
    assert line.startswith(":fast_forward: <@U0RM1> skipped verification: checkout is down")
    assert "<!channel>" not in line and "&lt;!channel&gt;" in line
    blocks = json.dumps(message_of(slack, SHA_A)["blocks"])
    assert "*Verification skipped* by <@U0RM1>" in blocks
    assert "release_skip_verification" not in buttons(message_of(slack, SHA_A))

    outside.edge.health.default = 500  # the service is down, but nothing checks any more
    clock.advance(minutes=20)
    assert await checks_due(bot) == 0
    assert deployment(bot, SHA_A).state == "verified"
    assert outside.edge.github.calls("POST", "/dispatches") == []
    with bot.runtime.db.read() as session:
        runs = session.exec(select(CheckRun).where(CheckRun.deployment_id == deployment_id))
        assert {run.status for run in runs} == {"cancelled"}
        figures = dora.metrics(session, now=clock.now(), days=7, service="checkout")
    assert (figures.deployments, figures.failures) == (1, 0)


async def test_only_a_deployment_being_verified_can_skip_verification(
    bot: Bot, slack: FakeSlackWebApi, outside: Outside, clock: FrozenClock
) -> None:
    await deploy(bot, SHA_A, 1)
    await verify_fully(bot, clock)
    deployment_id = deployment(bot, SHA_A).id
    assert deployment_id is not None
    assert "release_skip_verification" not in buttons(message_of(slack, SHA_A))
    outcome = await bot.runtime.usecases.skip_verification(
        deployment_id=deployment_id, user_id="U0RM1", reason="too late"
    )
    assert outcome.result == "refused"
    assert "only a deployment being verified can skip verification" in outcome.message
    assert audit_details(bot, "verification.skipped") == []


async def test_a_gate_escalating_to_on_call_mentions_who_is_on_call_now(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    outside: Outside,
    clock: FrozenClock,
    app_private_key: str,
) -> None:
    config = configured(policy="rollback", pagerduty=paged_by_pagerduty())
    staging, production = config.services["checkout"].environments
    assert production.gate is not None and production.gate.escalate_to is None
    gate = production.gate.model_copy(update={"escalate_after": timedelta(hours=2, minutes=30)})
    production = production.model_copy(update={"gate": gate})
    checkout = config.services["checkout"].model_copy(
        update={"environments": [staging, production]}
    )
    config = config.model_copy(update={"services": {**config.services, "checkout": checkout}})
    clock.set(datetime(2026, 11, 20, 16, 30, tzinfo=UTC))
    outside.edge.github.commit_author = "someone-else"
    outside.edge.github.compare_files = [
        {"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}
    ]
    chosen = overrides(clock, outside, config, PAGERDUTY_API_TOKEN=PD_TOKEN)
    async with bot_factory(env=gated_env(app_private_key), overrides=chosen) as bot:
        await request_gate(bot)
        clock.advance(hours=2, minutes=31)
        assert await gate_sweep(bot.runtime) >= 1
        await bot.send_outbox()
    message = slack.messages(CHANNEL)[0]
    lines = [str(m["text"]) for m in slack.thread(CHANNEL, message["ts"])]
    [escalation] = [t for t in lines if ":rotating_light:" in t]
    assert "<@U0SRE1>" in escalation and "S0ONCALL1" not in escalation
    [asked] = outside.rest.requests
    assert asked.url.params.get_list("escalation_policy_ids[]") == [POLICY]


def test_the_documented_release_template_shows_a_skipped_verification_as_the_builder_does() -> None:
    from dataclasses import replace

    from bot.render import Renderer
    from tests.test_render import EXAMPLE_TEMPLATES, VIEW

    skipped = {"by": "U0RM1", "reason": "hotfix <!here> & more"}
    view = replace(
        VIEW,
        state="verified",
        verification={
            "total": 3,
            "passed": 1,
            "failed": [],
            "pending": 0,
            "cancelled": 2,
            "skipped": skipped,
        },
    )
    built = Renderer().release_message(view)
    assert built == Renderer(template_dir=EXAMPLE_TEMPLATES).release_message(view)
    text = json.dumps(built[1])
    assert "*Verification skipped* by <@U0RM1>: hotfix &lt;!here&gt; &amp; more" in text
