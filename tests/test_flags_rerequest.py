"""A flag step that expired or was rejected can be asked for again on the same release
message (Re-request), as an expired deploy gate can: a fresh step to the same percentage
with a new expiry, its approvers called in the thread. Only the release managers, owners
and the release's approvers may ask; a late click on the closed step's Release button
never counts for the fresh step; and a freeze does not stop the asking, only the approving."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.scheduling import gate_sweep
from bot.store.tables import FlagApproval
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fake_flags import LD_API_KEY, FlagEdge, flag_fixtures
from tests.fakes import FrozenClock
from tests.slackflow import CHANNEL, told
from tests.test_flags_gates import (
    button_values,
    pending_step,
    reject,
    release_section,
    steps,
    two_approvals_config,
)
from tests.test_flags_launchdarkly import FLAG, audited, flag_click, thread

REREQUEST = "release_flag_rerequest"


flags, bot = flag_fixtures(
    environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY}, config=two_approvals_config
)


def approvals(bot: Bot, step_id: int | None) -> list[str]:
    with bot.runtime.db.read() as session:
        return list(
            session.exec(
                select(FlagApproval.user_id)
                .where(FlagApproval.step_id == step_id)
                .order_by(col(FlagApproval.id))
            ).all()
        )


async def expire(bot: Bot, clock: FrozenClock) -> None:
    clock.advance(hours=4)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()


async def test_an_expired_flag_step_is_asked_for_again_and_a_late_release_click_stays_refused(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    stale_release = button_values(slack)["release_flag"]
    assert stale_release == f"{deployment_id}:{FLAG}"
    await expire(bot, clock)
    [old] = steps(bot)
    assert old.status == "expired"
    offered = button_values(slack)
    assert list(offered) == [REREQUEST]
    assert offered[REREQUEST] == f"{deployment_id}/{old.id}:{FLAG}" != stale_release

    # Someone who may not release the flag is told who can; nothing opens.
    await flag_click(bot, "U0STRANGER", REREQUEST, deployment_id, value=offered[REREQUEST])
    assert "may re-request" in told(slack, "U0STRANGER")
    assert "<!subteam^S0RELMGRS>" in told(slack, "U0STRANGER")
    assert len(steps(bot)) == 1 and audited(bot, "flag.step_rerequested") == []

    asked_at = clock.now()
    await flag_click(bot, "U0RM2", REREQUEST, deployment_id, value=offered[REREQUEST])
    assert f"asked again: the step of {FLAG} to 10% waits for approval" in told(slack, "U0RM2")
    old, fresh = steps(bot)
    assert (fresh.status, fresh.percent, fresh.requested_by) == ("pending", 10, "U0RM2")
    assert fresh.expires_at is not None
    assert fresh.expires_at == asked_at + timedelta(hours=4)
    assert old.status == "expired" and approvals(bot, fresh.id) == []
    [event] = audited(bot, "flag.step_rerequested")
    assert (event["actor"], event["subject"]) == ("U0RM2", f"flag_step:{old.id}")
    assert (event["step"], event["percent"], event["was"]) == (fresh.id, 10, "expired")
    line = thread(slack)[-1]
    assert line.startswith(":repeat: <!subteam^S0RELMGRS>")
    assert f"the step of {FLAG} to 10% was expired and is asked for again" in line
    assert line.endswith("by <@U0RM2>")
    # The message, edited in place, offers the fresh step; its Release button names it.
    assert len(slack.messages(CHANNEL)) == 1
    now_offered = button_values(slack)
    assert list(now_offered) == ["release_flag", "release_flag_reject"]
    assert now_offered["release_flag"] == f"{deployment_id}/{fresh.id}:{FLAG}"
    assert ":hourglass:" in release_section(slack) and "expires" in release_section(slack)

    # A late click on the expired step's Release button does not count for the fresh step.
    await flag_click(bot, "U0RM1", "release_flag", deployment_id, value=stale_release)
    assert "from before the step of" in told(slack, "U0RM1")
    assert approvals(bot, fresh.id) == [] and len(steps(bot)) == 2
    # Nor does a second click on Re-request open a third step.
    await flag_click(bot, "U0RM1", REREQUEST, deployment_id, value=offered[REREQUEST])
    assert "already asked for again" in told(slack, "U0RM1")
    assert len(steps(bot)) == 2 and len(audited(bot, "flag.step_rerequested")) == 1

    fresh_release = now_offered["release_flag"]
    for user in ("U0RM1", "U0RM2"):
        await flag_click(bot, user, "release_flag", deployment_id, value=fresh_release)
    assert "approved" in told(slack, "U0RM2")
    assert flags.launchdarkly.serving() == 10
    assert approvals(bot, fresh.id) == ["U0RM1", "U0RM2"]


async def test_a_rejected_flag_step_is_asked_for_again_during_a_freeze_but_not_approved(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    clock.set(datetime(2026, 12, 22, 18, 0, tzinfo=UTC))  # before the year-end freeze
    deployment_id = await pending_step(bot, slack, clock)
    await reject(bot, slack, "U0RM2", deployment_id)
    [old] = steps(bot)
    value = button_values(slack)[REREQUEST]
    assert value == f"{deployment_id}/{old.id}:{FLAG}"

    clock.set(datetime(2026, 12, 23, 9, 0, tzinfo=UTC))  # the freeze holds production
    await flag_click(bot, "U0OWNER01", REREQUEST, deployment_id, value=value)
    assert "asked again" in told(slack, "U0OWNER01")
    old, fresh = steps(bot)
    assert (old.status, fresh.status, fresh.percent) == ("rejected", "pending", 10)
    assert "was rejected and is asked for again" in thread(slack)[-1]

    fresh_release = button_values(slack)["release_flag"]
    await flag_click(bot, "U0RM1", "release_flag", deployment_id, value=fresh_release)
    assert "production is frozen: Year-end change freeze" in told(slack, "U0RM1")
    assert approvals(bot, fresh.id) == [] and flags.launchdarkly.patches() == []

    # The fresh step is regulated as any other: it can be rejected again, then re-requested.
    await reject(bot, slack, "U0RM2", deployment_id)
    assert steps(bot)[-1].status == "rejected"
    assert button_values(slack)[REREQUEST] == f"{deployment_id}/{fresh.id}:{FLAG}"
    await flag_click(bot, "U0RM1", REREQUEST, deployment_id, value=value)  # the first button
    assert "already asked for again" in told(slack, "U0RM1")
    assert len(steps(bot)) == 2


async def test_a_late_reject_click_never_closes_the_step_asked_for_again(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    [first] = steps(bot)
    closed_reject = button_values(slack)["release_flag_reject"]
    assert closed_reject == f"{deployment_id}/{first.id}:{FLAG}"  # Reject names its step
    await reject(bot, slack, "U0RM2", deployment_id)
    await flag_click(bot, "U0RM1", REREQUEST, deployment_id, value=button_values(slack)[REREQUEST])
    old, fresh = steps(bot)
    assert (old.status, fresh.status) == ("rejected", "pending")

    # The closed step's Reject button, and one from before Reject carried a step, are
    # refused: the fresh step keeps waiting for its approvals.
    for late in (closed_reject, f"{deployment_id}:{FLAG}"):
        await reject(bot, slack, "U0RM2", deployment_id, value=late)
        assert "from before the step of" in told(slack, "U0RM2")
        assert [s.status for s in steps(bot)] == ["rejected", "pending"]
    assert len(audited(bot, "flag.step_rejected")) == 1

    # The Reject button the message shows now closes the fresh step.
    assert button_values(slack)["release_flag_reject"] == f"{deployment_id}/{fresh.id}:{FLAG}"
    await reject(bot, slack, "U0RM2", deployment_id)
    assert [s.status for s in steps(bot)] == ["rejected", "rejected"]


async def test_two_re_request_clicks_at_once_open_one_fresh_step(
    bot: Bot, slack: FakeSlackWebApi, flags: FlagEdge, clock: FrozenClock
) -> None:
    deployment_id = await pending_step(bot, slack, clock)
    await expire(bot, clock)
    value = button_values(slack)[REREQUEST]

    await asyncio.gather(
        flag_click(bot, "U0RM1", REREQUEST, deployment_id, value=value),
        flag_click(bot, "U0RM2", REREQUEST, deployment_id, value=value),
    )

    old, fresh = steps(bot)
    assert (old.status, fresh.status) == ("expired", "pending")
    assert len(audited(bot, "flag.step_rerequested")) == 1
    answers = [told(slack, "U0RM1"), told(slack, "U0RM2")]
    assert sum("asked again: the step of" in answer for answer in answers) == 1
    assert sum("already asked for again" in answer for answer in answers) == 1
