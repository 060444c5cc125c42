"""A flag step that waits long escalates as a deploy gate does: at `escalate_after` the
release thread mentions `escalate_to` (or whoever is on call), each approver who has not
voted is asked in a direct message, once per step, and a step asked for again escalates on
its own clock."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import Config, parse_config
from bot.scheduling import gate_sweep
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_flags import LD_API_KEY, FlagEdge, flag_bot, flag_fixtures
from tests.fakes import FrozenClock
from tests.helpers import example_config_data
from tests.slackflow import told
from tests.test_flags_gates import button_values, pending_step, reject, steps
from tests.test_flags_launchdarkly import FLAG, audited, flag_click, thread
from tests.test_gate_escalation import direct_messages


def escalating_data() -> dict[str, Any]:
    """Two approvals per step from the release managers; escalation to the SREs' group
    after two hours of the default four-hour expiry."""
    data = example_config_data()
    release = data["services"]["checkout"]["release"]
    release["require"] = [{"approvers": ["S0RELMGRS"], "count": 2}]
    release["escalate_after"] = "2h"
    release["escalate_to"] = ["S0SRE"]
    return data


def escalating_config() -> Config:
    return parse_config(escalating_data())


flags, bot = flag_fixtures(environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY}, config=escalating_config)


def escalations(slack: FakeSlackWebApi) -> list[str]:
    return [line for line in thread(slack) if line.startswith(":rotating_light:")]


async def sweep(bot: Bot, clock: FrozenClock, *, minutes: int) -> int:
    clock.advance(minutes=minutes)
    acted = await gate_sweep(bot.runtime)
    await bot.send_outbox()
    return acted


async def test_a_waiting_flag_step_escalates_once_with_direct_messages_to_who_has_not_voted(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)  # U0RM1 approved, one more needed

    assert await sweep(bot, clock, minutes=119) == 0
    assert escalations(slack) == [] and direct_messages(slack) == {}
    assert await sweep(bot, clock, minutes=1) == 1  # two hours: escalate_after

    [line] = escalations(slack)
    assert line.startswith(":rotating_light: <!subteam^S0SRE>")
    assert f"the step of {FLAG} to 10% has waited 2h for approval" in line
    dms = direct_messages(slack)
    # The release managers' group, but not U0RM1, who approved already.
    assert sorted(dms) == ["U0BOTH", "U0OWNER01", "U0RM2"]
    assert all(f"the step of {FLAG} to 10% (checkout in production)" in t for t in dms.values())
    assert all("waited 2h for your approval" in text for text in dms.values())
    [event] = audited(bot, "flag.escalated")
    assert (event["actor"], event["subject"]) == ("releasebot", f"flag_step:{steps(bot)[0].id}")
    assert (event["escalate_to"], event["asked"]) == (["S0SRE"], sorted(dms))

    # Once per step: later sweeps leave it, and the step still waits for its approval.
    assert await sweep(bot, clock, minutes=30) == 0
    assert len(escalations(slack)) == 1 and len(audited(bot, "flag.escalated")) == 1
    await flag_click(bot, "U0RM2", "release_flag", deployment_id)
    assert "approved" in told(slack, "U0RM2")
    assert flags.launchdarkly.serving() == 10


async def test_a_step_decided_in_time_never_escalates_and_one_asked_again_escalates_anew(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    await sweep(bot, clock, minutes=60)
    await reject(bot, slack, "U0RM2", deployment_id)
    assert await sweep(bot, clock, minutes=120) == 0  # closed: nothing to escalate
    assert escalations(slack) == []

    await flag_click(
        bot,
        "U0RM1",
        "release_flag_rerequest",
        deployment_id,
        value=button_values(slack)["release_flag_rerequest"],
    )
    old, fresh = steps(bot)
    assert await sweep(bot, clock, minutes=119) == 0  # two hours from the fresh step
    assert await sweep(bot, clock, minutes=1) == 1
    [event] = audited(bot, "flag.escalated")
    assert event["subject"] == f"flag_step:{fresh.id}"
    # Nobody voted on the fresh step: the whole group is asked.
    assert event["asked"] == ["U0BOTH", "U0OWNER01", "U0RM1", "U0RM2"]


async def test_without_escalate_to_a_flag_step_escalates_to_on_call(
    bot_factory: BotFactory,
    clock: FrozenClock,
    flags: FlagEdge,
    app_private_key: str,
    slack: FakeSlackWebApi,
) -> None:
    data = escalating_data()
    del data["services"]["checkout"]["release"]["escalate_to"]
    async with flag_bot(
        bot_factory,
        clock,
        app_private_key,
        transport=flags.transport,
        environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY},
        config=parse_config(data),
    ) as on_call:
        await pending_step(on_call, slack, clock)

        assert await sweep(on_call, clock, minutes=120) == 1

        # No PagerDuty schedule for checkout in the test: slack.oncall is who is on call.
        [line] = escalations(slack)
        assert line.startswith(":rotating_light: <!subteam^S0ONCALL1>")
        [event] = audited(on_call, "flag.escalated")
        assert event["escalate_to"] == ["S0ONCALL1"]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"escalate_after": "4h"},
            "services.checkout.release.escalate_after: must be shorter than expires_after (4h)",
        ),
        (
            {"escalate_to": ["S0SRE"]},
            "services.checkout.release.escalate_to: is used only with escalate_after",
        ),
    ],
)
def test_flag_escalation_settings_are_checked_by_their_path(
    settings: dict[str, object], problem: str
) -> None:
    data = example_config_data()
    data["services"]["checkout"]["release"].update(settings)
    with pytest.raises(Exception) as raised:
        parse_config(data)
    assert problem in "\n".join(getattr(raised.value, "problems", []))
