"""A click by someone Slack's directory cannot find (`users.info` answers `user_not_found`) or
while the directory does not answer, through signed HTTP requests into the real app: refused
with a private answer naming the problem, audited, and the gate left as it was."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from bot.services import audit
from bot.store.tables import Approval, AuditEvent, Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub
from tests.helpers import encode, fixture, github_headers
from tests.slackflow import click, request_gate, the_gate, told

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]
NOBODY = "U0NOBODY"  # not in the fake Slack's directory: users.info answers user_not_found


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


def refusals(bot: Bot) -> list[AuditEvent]:
    with bot.runtime.db.read() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert audit.verify_chain(session)[1] is None
    return [e for e in events if e.action == "gate.decision_refused"]


def approvals(bot: Bot) -> list[Approval]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(Approval)).all())


async def test_a_click_by_someone_slack_cannot_find_is_refused_privately_and_audited(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, NOBODY, "release_approve", gate.id or 0)

    answer = told(slack, NOBODY)
    assert "could not confirm who you are (users.info: user_not_found)" in answer
    assert "nothing was recorded" in answer
    [refused] = refusals(bot)
    assert (refused.actor, refused.subject) == (NOBODY, f"gate:{gate.id}")
    details = json.loads(refused.details)
    assert details["decision"] == "approve" and "user_not_found" in details["reason"]
    after = the_gate(bot)
    assert (after.status, after.row_version) == ("pending", gate.row_version)
    assert approvals(bot) == []
    assert github.decisions() == []


async def test_a_directory_that_does_not_answer_refuses_the_click_until_it_does(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)

    slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")
    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    answer = told(slack, "U0RM1")
    assert "Slack's directory did not answer" in answer and "try again" in answer
    assert [r.actor for r in refusals(bot)] == ["U0RM1"]
    assert the_gate(bot).status == "pending"

    await click(bot, "U0RM1", "release_approve", gate.id or 0)  # Slack answers again
    assert the_gate(bot).status == "approved"


async def test_an_unknown_person_confirming_break_glass_gets_an_answer(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)
    gate = the_gate(bot)

    slack.fail_next("usergroups.users.list", status=200, error="no_such_subteam", times=10)
    await click(bot, NOBODY, "release_break_glass_confirm", gate.id or 0)
    assert "no_such_subteam" in told(slack, NOBODY)
    assert the_gate(bot).status == "pending"


async def test_promote_and_roll_back_are_refused_and_audited_while_the_directory_fails(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"].update(path=".github/workflows/deploy-staging.yml", head_sha="b" * 40)
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()
    with bot.runtime.db.read() as session:
        [staging] = session.exec(select(Deployment)).all()

    for action in ("release_promote", "release_unlock"):
        slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")
        await click(bot, "U0RM1", action, staging.id or 0)
        assert "Slack's directory did not answer" in told(slack, "U0RM1")

    with bot.runtime.db.read() as session:
        assert len(session.exec(select(Deployment)).all()) == 1  # nothing was promoted
        refused = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "release.action_refused")
            .order_by(AuditEvent.seq)  # type: ignore[arg-type]
        ).all()
    assert [json.loads(e.details)["action"] for e in refused] == ["promote", "unlock"]
    assert {(e.actor, e.subject) for e in refused} == {("U0RM1", f"deployment:{staging.id}")}
