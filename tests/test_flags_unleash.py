"""Releasing a feature toggle on Unleash: three gated steps to 100% through its
flexibleRollout strategy, one step's checks failing, the kill switch turning it off, all
audited; and a freeze holding a flag release until break-glass opens its window."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_flags import UNLEASH_HOST, UNLEASH_TOKEN, FlagEdge, flag_fixtures
from tests.fakes import FrozenClock
from tests.helpers import SHA_B, example_config_data
from tests.slackflow import click, gated_env, request_gate, submit_reason, the_gate, told
from tests.test_flags_launchdarkly import (
    FLAG,
    audited,
    deploy,
    flag_buttons,
    flag_click,
    run_checks,
    thread,
)


def unleash_config() -> Config:
    data = example_config_data()
    flag = data["services"]["checkout"]["release"]["flags"][0]
    flag.pop("launchdarkly")
    flag["unleash"] = {"url": f"https://{UNLEASH_HOST}", "environment": "production"}
    return parse_config(data)


flags, bot = flag_fixtures(environ={"UNLEASH_ADMIN_TOKEN": UNLEASH_TOKEN}, config=unleash_config)


async def test_a_toggle_goes_to_100_percent_in_three_gated_steps_then_the_kill_switch(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)
    unleash = flags.unleash
    for percent, user in ((10, "U0RM1"), (50, "U0RM2")):
        assert flag_buttons(slack)["release_flag"] == f"Release {FLAG} {percent}%"
        await flag_click(bot, user, "release_flag", deployment_id)
        assert unleash.serving() == percent
        await run_checks(bot, clock)

    [strategy] = unleash.features[("default", FLAG)]["production"]["strategies"]
    assert strategy["name"] == "flexibleRollout"
    assert strategy["parameters"] == {"stickiness": "default", "groupId": FLAG, "rollout": "50"}
    calls = [
        (r.method, r.url.path.rsplit("/environments/production", 1)[1]) for r in unleash.requests
    ]
    assert calls[:3] == [("GET", "/strategies"), ("POST", "/strategies"), ("POST", "/on")]
    assert ("PUT", f"/strategies/{strategy['id']}") in calls  # the second step updates it

    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    assert unleash.serving() == 100
    flags.edge.health.queued = [500]
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    assert any(f"checks failed after {FLAG} went to 100%" in t for t in thread(slack))
    assert flag_buttons(slack) == {"release_kill_switch": "Kill switch"}

    await flag_click(bot, "U0RM2", "release_kill_switch", deployment_id)  # an approver
    assert unleash.serving() == 0
    assert unleash.requests[-1].url.path.endswith("/environments/production/off")
    delivered = audited(bot, "flag.delivered")
    assert [(d["action"], d["percent"]) for d in delivered] == [
        ("rollout", 10),
        ("rollout", 50),
        ("rollout", 100),
        ("off", 0),
    ]
    assert delivered[0]["receipt"]["strategy_added"] is True
    assert delivered[1]["receipt"]["strategy_id"] == strategy["id"]
    assert delivered[-1]["receipt"] == {
        "platform": "unleash",
        "project": "default",
        "environment": "production",
        "status": 200,
        "enabled": False,
    }
    with bot.runtime.db.read() as session:
        trail = " ".join(r.details for r in session.exec(select(AuditEvent)).all())
    assert UNLEASH_TOKEN not in trail
    pack = await bot.runtime.usecases.evidence_of_deployment(deployment_id)
    assert pack is not None
    assert [s["status"] for s in pack["flags"]] == ["passed", "passed", "failed", "off"]


async def test_a_freeze_holds_a_flag_release_until_break_glass_opens_its_window(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # the example's year-end freeze
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    refused = told(slack, "U0RM1")
    assert "production is frozen: Year-end change freeze; use break-glass" in refused
    assert flags.unleash.requests == []
    assert audited(bot, "flag.step_opened") == []

    # Break-glass on the service's gate in production opens the window for its flags too.
    await request_gate(bot, sha=SHA_B)
    gate_id = the_gate(bot).id or 0
    await click(bot, "U0RM2", "release_break_glass", gate_id)
    await submit_reason(bot, slack, "U0RM2", "Checkout is down for every customer; hotfix")
    await click(bot, "U0SRE1", "release_break_glass_confirm", gate_id)
    assert the_gate(bot).status == "approved"

    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    assert "approved" in told(slack, "U0RM1")
    assert flags.unleash.serving() == 10
    [opened] = audited(bot, "flag.step_opened")
    assert json.loads(json.dumps(opened["requirement"]))["mode"] == "quorum"


async def test_with_auto_each_step_after_the_first_is_taken_once_its_checks_passed(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    flags: FlagEdge,
    clock: FrozenClock,
    app_private_key: str,
) -> None:
    data = example_config_data()
    data["services"]["checkout"]["release"]["flags"][0]["auto"] = True
    overrides = Overrides(
        clock=clock,
        config=parse_config(data),
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=flags.transport,
        environ={"LAUNCHDARKLY_API_KEY": "api-0123-ld-secret-token"},
    )
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as bot:
        deployment_id = await deploy(bot)
        await run_checks(bot, clock)
        await flag_click(bot, "U0RM1", "release_flag", deployment_id)
        assert flags.launchdarkly.serving() == 10
        await run_checks(bot, clock)
        assert flags.launchdarkly.serving() == 50  # nobody clicked
        await run_checks(bot, clock)
        assert flags.launchdarkly.serving() == 100
        approved = audited(bot, "flag.step_approved")
    assert [(a["actor"], a["percent"]) for a in approved] == [
        ("U0RM1", 10),
        ("releasebot", 50),
        ("releasebot", 100),
    ]
    assert approved[1]["reason"] == "auto: the checks after 10% passed"
