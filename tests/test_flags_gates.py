"""A flag step waiting for approvals is regulated as a deploy gate is: an approver may reject
it with a reason (anyone else is refused), it expires when nobody decides in time (a late
approval is refused), its approvers are reminded in the thread until then, and the evidence
pack shows how it closed. The flag platform is never touched by a step that closed."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.config import Config, parse_config
from bot.scheduling import gate_sweep
from bot.store.tables import FlagStep
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fake_flags import LD_API_KEY, FlagEdge, flag_fixtures
from tests.fakes import FrozenClock
from tests.helpers import example_config_data
from tests.slackflow import submit_reason, told
from tests.test_flags_launchdarkly import (
    FLAG,
    audited,
    deploy,
    flag_click,
    message,
    run_checks,
    thread,
)


def two_approvals_config() -> Config:
    """The example's release block, with two approvals per step (so a step waits after the
    first) and reminders every hour until the default four-hour expiry."""
    data = example_config_data()
    release = data["services"]["checkout"]["release"]
    release["require"] = [{"approvers": ["S0RELMGRS"], "count": 2}]
    release["remind_after"] = "1h"
    release["remind_every"] = "1h"
    return parse_config(data)


flags, bot = flag_fixtures(
    environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY}, config=two_approvals_config
)


def flag_buttons(slack: FakeSlackWebApi) -> list[str]:
    return [
        e["action_id"]
        for b in message(slack)["blocks"]
        if b["type"] == "actions" and b["block_id"].startswith("flag_actions")
        for e in b["elements"]
    ]


def release_section(slack: FakeSlackWebApi) -> str:
    return next(
        b["text"]["text"]
        for b in message(slack)["blocks"]
        if b["type"] == "section" and b.get("text", {}).get("text", "").startswith("*Release*")
    )


def steps(bot: Bot) -> list[FlagStep]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(FlagStep).order_by(FlagStep.id)).all())  # type: ignore[arg-type]


async def pending_step(bot: Bot, slack: FakeSlackWebApi, clock: FrozenClock) -> int:
    """A verified deploy whose flag's first step has one approval of the two it needs."""
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    assert "your approval is recorded" in told(slack, "U0RM1")
    assert flag_buttons(slack) == ["release_flag", "release_flag_reject"]
    return deployment_id


def button_values(slack: FakeSlackWebApi) -> dict[str, str]:
    """The flag buttons of the release message: action id -> the value it carries."""
    return {
        e["action_id"]: e["value"]
        for b in message(slack)["blocks"]
        if b["type"] == "actions" and b["block_id"].startswith("flag_actions")
        for e in b["elements"]
    }


async def reject(
    bot: Bot, slack: FakeSlackWebApi, user: str, deployment_id: int, *, value: str | None = None
) -> None:
    """A click on the message's Reject button (or one carrying `value`), then its reason."""
    clicked = value or button_values(slack)["release_flag_reject"]
    await flag_click(bot, user, "release_flag_reject", deployment_id, value=clicked)
    view = slack.opened_views()[-1]["view"]
    assert view["callback_id"] == "release_flag_reject_modal"
    assert await submit_reason(bot, slack, user, "not before the holiday sale") == {}


async def test_an_approver_rejects_a_waiting_flag_step_with_a_reason(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)

    await reject(bot, slack, "U0RM2", deployment_id)

    assert "rejected" in told(slack, "U0RM2")
    assert flags.launchdarkly.patches() == []  # the flag is not changed
    assert flags.launchdarkly.serving() == 0
    [step] = steps(bot)
    assert (step.status, step.decided_by, step.reason) == (
        "rejected",
        "U0RM2",
        "not before the holiday sale",
    )
    section = release_section(slack)
    assert "step to 10% rejected by <@U0RM2>: not before the holiday sale" in section
    # nothing to approve or reject on this deploy any more; the step may be asked for again
    assert flag_buttons(slack) == ["release_flag_rerequest"]
    line = next(t for t in thread(slack) if "was rejected" in t)
    assert "not before the holiday sale" in line and "<@U0RM2>" in line
    [rejected] = audited(bot, "flag.step_rejected")
    assert (rejected["actor"], rejected["subject"]) == ("U0RM2", f"flag_step:{step.id}")
    assert rejected["reason"] == "not before the holiday sale"

    # A late Release click on the same message is refused and changes nothing.
    await flag_click(bot, "U0BOTH", "release_flag", deployment_id)
    assert "was rejected by <@U0RM2>: not before the holiday sale" in told(slack, "U0BOTH")
    assert len(steps(bot)) == 1 and flags.launchdarkly.patches() == []

    pack = await bot.runtime.usecases.evidence_of_deployment(deployment_id)
    assert pack is not None
    [shown] = pack["flags"]
    assert (shown["status"], shown["decided_by"], shown["reason"]) == (
        "rejected",
        "U0RM2",
        "not before the holiday sale",
    )
    assert [a["user_id"] for a in shown["approvals"]] == ["U0RM1"]
    assert any(
        r["action"] == "flag.step_rejected" and r["actor"] == "U0RM2"
        for r in pack["audit"]["records"]
    )


async def test_someone_who_may_not_approve_a_flag_step_may_not_reject_it(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    before = release_section(slack)

    await reject(bot, slack, "U0STRANGER", deployment_id)

    refused = told(slack, "U0STRANGER")
    assert "you are not in S0RELMGRS; ask someone from <!subteam^S0RELMGRS>" in refused
    [step] = steps(bot)
    assert step.status == "pending" and step.decided_by is None and step.reason is None
    assert release_section(slack) == before
    assert flag_buttons(slack) == ["release_flag", "release_flag_reject"]
    assert audited(bot, "flag.step_rejected") == []
    [refusal] = audited(bot, "flag.action_refused")
    assert refusal["actor"] == "U0STRANGER" and refusal["flag"] == FLAG

    # The one who approved may not reject their own vote away either (one vote each).
    await reject(bot, slack, "U0RM1", deployment_id)
    assert "already" in told(slack, "U0RM1")
    assert steps(bot)[0].status == "pending"
    assert flags.launchdarkly.patches() == []


async def test_a_flag_step_nobody_decided_expires_and_a_late_approval_is_refused(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    assert "expires" in release_section(slack)

    clock.advance(hours=3, minutes=59)
    await gate_sweep(bot.runtime)
    assert steps(bot)[0].status == "pending"
    clock.advance(minutes=1)  # four hours, the default expiry
    await gate_sweep(bot.runtime)
    await bot.send_outbox()

    [step] = steps(bot)
    assert (step.status, step.decided_by) == ("expired", "releasebot")
    assert "step to 10% expired: nobody decided in time" in release_section(slack)
    assert flag_buttons(slack) == ["release_flag_rerequest"]
    assert any("expired: nobody decided in time" in t for t in thread(slack))
    [expired] = audited(bot, "flag.step_expired")
    assert (expired["actor"], expired["subject"]) == ("releasebot", f"flag_step:{step.id}")

    await flag_click(bot, "U0RM2", "release_flag", deployment_id)
    late = told(slack, "U0RM2")
    assert f"the step of {FLAG} to 10% expired at" in late
    assert "nobody decided in time" in late
    assert len(steps(bot)) == 1  # no new step, no second approval
    assert len(audited(bot, "flag.approval_recorded")) == 1
    assert flags.launchdarkly.patches() == []


async def test_a_click_after_the_expiry_before_the_sweep_expires_the_step_and_is_refused(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    clock.advance(hours=4, minutes=5)  # the sweep has not run

    await flag_click(bot, "U0RM2", "release_flag", deployment_id)

    assert "expired at" in told(slack, "U0RM2")
    assert steps(bot)[0].status == "expired"
    assert flags.launchdarkly.patches() == []
    assert len(audited(bot, "flag.approval_recorded")) == 1
    assert [e["actor"] for e in audited(bot, "flag.step_expired")] == ["releasebot"]


async def test_approvers_of_a_waiting_flag_step_are_reminded_each_hour_until_it_expires(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    await pending_step(bot, slack, clock)

    def reminders() -> list[str]:
        return [t for t in thread(slack) if "waited" in t and "for approval" in t]

    async def sweep_at(minutes: int) -> None:
        clock.advance(minutes=minutes)
        await gate_sweep(bot.runtime)
        await bot.send_outbox()

    await sweep_at(59)
    assert reminders() == []
    await sweep_at(1)  # one hour: remind_after
    [first] = reminders()
    assert first.startswith(":bell: <!subteam^S0RELMGRS>")
    assert f"the step of {FLAG} to 10% has waited 1h" in first
    await sweep_at(0)
    await sweep_at(30)
    assert len(reminders()) == 1  # at most once per interval
    await sweep_at(30)
    await sweep_at(10)
    assert len(reminders()) == 2
    await sweep_at(50)
    assert len(reminders()) == 3
    await sweep_at(60)  # four hours: expired, not reminded
    assert len(reminders()) == 3
    assert steps(bot)[0].status == "expired"
    await sweep_at(120)
    assert len(reminders()) == 3
    reminded = audited(bot, "flag.reminded")
    assert len(reminded) == 3 and reminded[0]["approvers"] == ["S0RELMGRS"]


def test_flag_reminders_must_come_before_the_expiry() -> None:
    data = example_config_data()
    data["services"]["checkout"]["release"]["remind_after"] = "5h"
    with pytest.raises(Exception) as raised:
        parse_config(data)
    assert "services.checkout.release.remind_after: must be shorter than expires_after (4h)" in (
        "\n".join(getattr(raised.value, "problems", []))
    )


async def test_a_reject_from_a_step_already_released_is_refused_as_an_older_button(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    first_reject = button_values(slack)["release_flag_reject"]
    await flag_click(bot, "U0RM2", "release_flag", deployment_id)  # the quorum: 10%
    assert flags.launchdarkly.serving() == 10
    await run_checks(bot, clock)  # the 10% step's checks pass: 50% is offered
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)  # 50% waits for one more
    assert steps(bot)[-1].percent == 50 and steps(bot)[-1].status == "pending"

    await reject(bot, slack, "U0RM2", deployment_id, value=first_reject)

    assert "from an older state of the release message" in told(slack, "U0RM2")
    assert steps(bot)[-1].status == "pending"
