"""An approval in Slack runs GitLab's held deployment job, through the real app.

GitLab leaves a protected environment's deployment job in `manual` once its approvals are
in; releasebot plays it (`deploy.gitlab_deployment_approval.run_job`, default true), once,
and the delivery receipt names the job. The fake GitLab of `tests/test_gitlab_gates.py`
answers at the network edge as GitLab does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select

from bot.domain.errors import ConfigError
from bot.services import audit
from bot.store.tables import AuditEvent
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FrozenClock
from tests.slackflow import click
from tests.test_gitlab_gates import (
    FakeGitLab,
    approval_section,
    deployment_hook,
    gates,
    gitlab_sends,
    ledger_config,
    production,
    thread,
)
from tests.test_gitlab_gates import bot as bot  # noqa: F401  (the fixtures, shared)
from tests.test_gitlab_gates import gitlab as gitlab  # noqa: F401
from tests.test_gitlab_gates import make_bot as make_bot  # noqa: F401

JOB = 3580121225  # deployment 15's job
JOB_URL = f"https://gitlab.com/acme/ledger/-/jobs/{JOB}"
PLAY = f"/api/v4/projects/30/jobs/{JOB}/play"


def receipts(bot: Bot) -> list[dict[str, Any]]:
    """What the GitLab deployer answered, as each delivery receipt recorded it."""
    with bot.runtime.db.read() as session:
        assert audit.verify_chain(session)[1] is None
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == "deployer.execute.delivered")
        ).all()
        found = [r for e in events for r in json.loads(e.details)["receipts"]]
    return [r for r in found if r["platform"] == "gitlab_deployment_approval"]


async def approve_in_slack(bot: Bot, gitlab: FakeGitLab, **hold: Any) -> None:
    """Deployment 15 waits in GitLab; a release manager approves its gate in Slack."""
    gitlab.hold(15, **hold)
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    await click(bot, "U0RM1", "release_approve", gates(bot)[0].id or 0)


async def test_an_approval_in_slack_runs_the_held_job_once_and_the_receipt_names_it(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    await approve_in_slack(bot, gitlab)

    [(path, body)] = gitlab.approvals()
    assert path.endswith("/deployments/15/approval") and body["status"] == "approved"
    assert gitlab.plays() == [PLAY]
    approval, play = (r for r in gitlab.requests if r.method == "POST")
    assert gitlab.requests.index(approval) < gitlab.requests.index(play)
    assert gitlab.jobs[JOB]["status"] == "pending"
    said = thread(slack)
    assert "GitLab recorded it as approved by releasebot-approver" in said
    assert f"ran job {JOB} (deploy): GitLab has it pending" in said
    assert JOB_URL in said
    assert ":white_check_mark:" in approval_section(slack)
    [receipt] = receipts(bot)
    assert (receipt["action"], receipt["url"], receipt["run_id"]) == ("approve", JOB_URL, str(JOB))

    # GitLab's hooks then move the deployment on; nothing is played again.
    gitlab.deployments[15]["status"] = "running"
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("running"))
    assert production(bot).state == "in_progress"
    assert gitlab.plays() == [PLAY]


async def test_an_approval_gitlab_still_waits_on_plays_nothing_and_says_so(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    await approve_in_slack(bot, gitlab, approvals=2)  # a GitLab rule wants one more approver

    assert len(gitlab.approvals()) == 1
    assert gitlab.plays() == []
    assert gitlab.jobs[JOB]["status"] == "manual"
    assert f"GitLab waits for 1 more approval, so job {JOB} (deploy) was not run" in (thread(slack))
    [receipt] = receipts(bot)
    assert receipt["run_id"] is None
    assert gates(bot)[0].status == "approved"


async def test_a_retry_after_a_lost_answer_does_not_play_the_job_twice(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab, clock: FrozenClock
) -> None:
    gitlab.outage_at_play = 2  # GitLab plays the job; that answer and the check are lost
    await approve_in_slack(bot, gitlab)

    assert gitlab.plays() == [PLAY]
    assert gitlab.jobs[JOB]["status"] == "pending"
    assert receipts(bot) == []  # not delivered yet: the row waits to be sent again

    clock.advance(hours=1)
    await bot.send_outbox()

    assert len(gitlab.approvals()) == 2  # the same request, sent again
    assert gitlab.plays() == [PLAY]  # the job was found started, and not played again
    assert gitlab.jobs[JOB]["status"] == "pending"
    said = thread(slack)
    assert "GitLab had already recorded this decision" in said
    assert f"job {JOB} (deploy) was already pending in GitLab, so it was not run again" in said
    [receipt] = receipts(bot)
    assert (receipt["url"], receipt["run_id"]) == (JOB_URL, str(JOB))


async def test_run_job_false_approves_and_leaves_the_job_to_gitlab(
    make_bot: Callable[..., Any], slack: FakeSlackWebApi, gitlab: FakeGitLab
) -> None:
    async with make_bot(deploy={"gitlab_deployment_approval": {"run_job": False}}) as bot:
        await approve_in_slack(bot, gitlab)

        assert len(gitlab.approvals()) == 1
        assert gitlab.plays() == []
        assert gitlab.jobs[JOB]["status"] == "manual"
        assert "GitLab recorded it as approved by releasebot-approver" in thread(slack)
        assert ":white_check_mark:" in approval_section(slack)


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_a_job_that_already_ended_is_a_clear_failure_and_never_replayed(
    bot: Bot, slack: FakeSlackWebApi, gitlab: FakeGitLab, clock: FrozenClock, status: str
) -> None:
    gitlab.hold(15)
    gitlab.jobs[JOB]["status"] = status
    await gitlab_sends(bot, "Deployment Hook", deployment_hook("blocked"))
    await click(bot, "U0RM1", "release_approve", gates(bot)[0].id or 0)

    assert len(gitlab.approvals()) == 1
    assert gitlab.plays() == []
    said = thread(slack)
    assert "Could not approve through gitlab deployment approval" in said
    assert "GitLab recorded the approval of deployment 15, but its job did not run" in said
    assert f"GitLab job {JOB} (deploy) is {status}" in said
    assert "retry it in GitLab" in said
    assert ":white_check_mark:" not in approval_section(slack)

    clock.advance(hours=1)  # a refusal is final: nothing is sent again
    await bot.send_outbox()
    assert len(gitlab.approvals()) == 1 and gitlab.plays() == []


@pytest.mark.parametrize("value", ["maybe", 3, None])
def test_an_invalid_run_job_names_its_yaml_path(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        ledger_config(deploy={"gitlab_deployment_approval": {"run_job": value}})
    path = "services.ledger.environments[1].deploy.gitlab_deployment_approval.run_job"
    assert any(p.startswith(f"{path}: ") and "true or false" in p for p in caught.value.problems)


def test_run_job_defaults_to_true() -> None:
    config = ledger_config()
    deploy = config.services["ledger"].environments[1].deploy
    assert deploy is not None
    assert deploy.target.model_dump(mode="json") == {"run_job": True}
