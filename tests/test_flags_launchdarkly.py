"""Releasing a feature flag on LaunchDarkly after a deploy verifies: three gated steps to
100%, each verified by the service's checks again, one step's checks failing, and the kill
switch turning the flag off; every change audited with LaunchDarkly's answer as receipt."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import col, select

from bot.config import parse_config
from bot.domain.errors import ConfigError
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fake_flags import LD_API_KEY, FlagEdge, flag_fixtures
from tests.fakes import FrozenClock
from tests.helpers import (
    SHA_A,
    deployment_status,
    encode,
    example_config_data,
    github_headers,
    slack_headers,
)
from tests.slackflow import CHANNEL, told

FLAG = "new-checkout-flow"


flags, bot = flag_fixtures(environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY})


async def deploy(bot: Bot, *, creator: str = "Codertocat") -> int:
    body = encode(deployment_status("success", sha=SHA_A, deployment_id=1, creator=creator))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()
    with bot.runtime.db.read() as session:
        found = session.exec(select(Deployment)).one()
    assert found.id is not None
    return found.id


async def run_checks(bot: Bot, clock: FrozenClock) -> None:
    """Walk the clock through the example's check offsets (0s, 1m, 5m, 15m), as the
    scheduler's `checks.tick` job does."""
    for minutes in (0, 1, 4, 10):
        clock.advance(minutes=minutes)
        await checks_tick(bot.runtime)
        await bot.send_outbox()


def message(slack: FakeSlackWebApi) -> dict[str, Any]:
    return slack.messages(CHANNEL)[0]


def flag_buttons(slack: FakeSlackWebApi) -> dict[str, str]:
    """The flag buttons of the release message: action id -> label."""
    return {
        e["action_id"]: e["text"]["text"]
        for b in message(slack)["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"].startswith(("release_flag", "release_kill"))
    }


def thread(slack: FakeSlackWebApi) -> list[str]:
    return [m["text"] for m in slack.thread(CHANNEL, message(slack)["ts"])[1:]]


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        found = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
        ).all()  # in chain order: without ORDER BY, PostgreSQL may answer in any order
    return [json.loads(r.details) | {"actor": r.actor, "subject": r.subject} for r in found]


async def flag_click(
    bot: Bot, user: str, action: str, deployment_id: int, *, value: str | None = None
) -> None:
    """A click on a flag button, whose value is `<deployment id>:<flag>` (or `value`)."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "b",
                "value": value or f"{deployment_id}:{FLAG}",
                "action_ts": str(time.time()),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = await bot.post(
        "/slack/events", body, slack_headers(body, content_type="application/x-www-form-urlencoded")
    )
    assert answer.status_code == 200, answer.text
    await bot.send_outbox()


async def test_a_flag_goes_to_100_percent_in_three_gated_steps_then_the_kill_switch(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await deploy(bot)
    assert flag_buttons(slack) == {}  # nothing to release before the deploy verifies
    await run_checks(bot, clock)
    assert flag_buttons(slack) == {"release_flag": f"Release {FLAG} 10%"}
    ld = flags.launchdarkly

    for percent, user, following in ((10, "U0RM1", 50), (50, "U0RM2", 100)):
        await flag_click(bot, user, "release_flag", deployment_id)
        assert ld.serving() == percent
        assert flag_buttons(slack) == {"release_kill_switch": "Kill switch"}  # checks first
        await run_checks(bot, clock)
        assert flag_buttons(slack) == {
            "release_flag": f"Release {FLAG} {following}%",
            "release_kill_switch": "Kill switch",
        }

    [first, second] = ld.patches()
    assert first["environmentKey"] == "production"
    assert first["instructions"] == [
        {"kind": "turnFlagOn"},
        {
            "kind": "updateFallthroughVariationOrRollout",
            "rolloutWeights": {
                "e432f62b-55f6-49dd-a02f-eb24acf39d05": 10_000,
                "a00bf58d-d252-476c-b915-15a74becacb4": 90_000,
            },
        },
    ]
    patch = next(r for r in ld.requests if r.method == "PATCH")
    assert patch.headers["content-type"] == (
        "application/json; domain-model=launchdarkly.semanticpatch"
    )
    assert patch.headers["ld-api-version"] == "20240415"
    assert (
        second["instructions"][1]["rolloutWeights"]["e432f62b-55f6-49dd-a02f-eb24acf39d05"]
        == 50_000
    )

    # The third step: 100%, and its health check finds the service down.
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    assert ld.serving() == 100
    flags.edge.health.queued = [500]
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    failure = next(t for t in thread(slack) if "checks failed after" in t)
    assert "<!subteam^S0ONCALL1>" in failure and f"{FLAG} went to 100%" in failure
    assert "expected HTTP 200, got 500" in failure
    assert flag_buttons(slack) == {"release_kill_switch": "Kill switch"}  # no next step

    # Someone who is neither an approver nor on-call is refused, with who can do it.
    await flag_click(bot, "U0STRANGER", "release_kill_switch", deployment_id)
    refused = told(slack, "U0STRANGER")
    assert f"only the approvers of {FLAG} or on-call may pull its kill switch" in refused
    assert "ask someone from <!subteam^S0ONCALL1> or <!subteam^S0RELMGRS>" in refused
    assert ld.serving() == 100

    # On-call pulls it: off at once, no quorum.
    await flag_click(bot, "U0SRE1", "release_kill_switch", deployment_id)
    assert ld.serving() == 0
    assert ld.patches()[-1]["instructions"] == [{"kind": "turnFlagOff"}]
    assert "kill switch" in told(slack, "U0SRE1")
    assert any(f"{FLAG} is off on launchdarkly" in t for t in thread(slack))
    assert flag_buttons(slack) == {}

    delivered = audited(bot, "flag.delivered")
    assert [(d["action"], d["percent"]) for d in delivered] == [
        ("rollout", 10),
        ("rollout", 50),
        ("rollout", 100),
        ("off", 0),
    ]
    assert delivered[0]["receipt"]["platform"] == "launchdarkly"
    assert delivered[0]["receipt"]["on"] is True
    assert delivered[-1]["receipt"]["on"] is False
    assert [d["actor"] for d in audited(bot, "flag.step_approved")] == ["U0RM1", "U0RM2", "U0RM1"]
    assert [d["percent"] for d in audited(bot, "flag.checks_passed")] == [10, 50]
    assert [d["percent"] for d in audited(bot, "flag.checks_failed")] == [100]
    assert [d["actor"] for d in audited(bot, "flag.kill_switch")] == ["U0SRE1"]
    assert [d["actor"] for d in audited(bot, "flag.action_refused")] == ["U0STRANGER"]
    with bot.runtime.db.read() as session:
        trail = " ".join(r.details for r in session.exec(select(AuditEvent)).all())
    assert LD_API_KEY not in trail

    pack = await bot.runtime.usecases.evidence_of_deployment(deployment_id)
    assert pack is not None
    steps = pack["flags"]
    assert [(s["flag"], s["kind"], s["percent"], s["status"]) for s in steps] == [
        (FLAG, "rollout", 10, "passed"),
        (FLAG, "rollout", 50, "passed"),
        (FLAG, "rollout", 100, "failed"),
        (FLAG, "kill", 0, "off"),
    ]
    assert [a["user_id"] for a in steps[0]["approvals"]] == ["U0RM1"]
    assert steps[0]["receipt"]["rollout_weights"]["e432f62b-55f6-49dd-a02f-eb24acf39d05"] == 10_000
    health = next(c for c in steps[2]["checks"] if c["name"] == f"health · {FLAG} 100%")
    assert [r["status"] for r in health["runs"]] == ["failed", "cancelled", "cancelled"]
    assert any(r["action"] == "flag.delivered" for r in pack["audit"]["records"])


async def test_someone_who_deployed_the_change_may_not_release_its_flag(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await deploy(bot, creator="octo-owner")  # U0OWNER01's GitHub login
    await run_checks(bot, clock)
    await flag_click(bot, "U0OWNER01", "release_flag", deployment_id)
    refused = told(slack, "U0OWNER01")
    assert "started this deployment" in refused
    assert "needs someone from <!subteam^S0RELMGRS> who did not write the change" in refused
    assert flags.launchdarkly.serving() == 0
    assert flags.launchdarkly.patches() == []
    assert audited(bot, "flag.step_opened") == []  # nothing changed
    [refusal] = audited(bot, "flag.action_refused")
    assert refusal["actor"] == "U0OWNER01"

    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    assert flags.launchdarkly.serving() == 10


@pytest.mark.parametrize("button", ["release_flag", "release_kill_switch"])
async def test_a_flag_click_while_slack_s_directory_is_down_is_refused_and_audited(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock, button: str
) -> None:
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)
    slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")

    await flag_click(bot, "U0RM1", button, deployment_id)

    refused = told(slack, "U0RM1")
    assert "Slack's directory did not answer" in refused
    assert "try again in a minute" in refused
    assert flags.launchdarkly.patches() == []
    assert audited(bot, "flag.step_opened") == []  # nothing changed
    [refusal] = audited(bot, "flag.action_refused")
    assert (refusal["actor"], refusal["flag"]) == ("U0RM1", FLAG)
    assert "Slack's directory did not answer" in refusal["reason"]


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    return "\n".join(raised.value.problems)


def test_a_release_block_with_mistakes_is_refused_naming_each_yaml_path() -> None:
    data = example_config_data()
    data["services"]["checkout"]["release"]["environment"] = "prod"
    assert (
        "services.checkout.release.environment: 'prod' is not an environment of this service"
        in problems_of(data)
    )

    data = example_config_data()
    data["services"]["checkout"]["release"]["flags"].append({"key": "other", "steps": [5]})
    assert (
        "services.checkout.release.flags[1]: set exactly one of launchdarkly, unleash or webhook"
        in problems_of(data)
    )

    data = example_config_data()
    data["services"]["checkout"]["release"]["flags"][0]["steps"] = [50, 10]
    assert "services.checkout.release.flags[0].steps[1]: steps must go up" in problems_of(data)

    data = example_config_data()
    data["services"]["checkout"]["release"]["flags"][0]["steps"] = [0, 150]
    assert "services.checkout.release.flags[0].steps[0]" in problems_of(data)
