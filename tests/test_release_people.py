"""The self-approval ban reaches everyone who touched a change, through signed requests into
the real app: commit authors known only by e-mail, GitHub noreply addresses, GitLab commit
authors, generic-webhook commit logins, and break-glass confirmers."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.store.tables import AuditEvent
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub
from tests.slackflow import click, request_gate, the_gate, told

DOCKERFILE = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


def audited(bot: Bot, action: str) -> str:
    """Every audit record of this action, as one string to search."""
    with bot.runtime.db.read() as session:
        events = session.exec(select(AuditEvent)).all()
    return " ".join(str(e.details) for e in events if e.action == action)


async def test_a_commit_author_known_only_by_email_cannot_approve(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = None  # GitHub linked no account to the commit
    github.commit_author_email = "Rita@ACME.example"  # Slack has rita@acme.example
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, "U0RM1", "release_approve", gate.id or 0)
    assert "you authored 1 of the commits" in told(slack, "U0RM1")
    assert the_gate(bot).status == "pending"
    assert "you authored 1 of the commits" in audited(bot, "gate.decision_refused")

    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert the_gate(bot).status == "approved"


async def test_a_github_noreply_address_is_its_login(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.compare_files = DOCKERFILE
    github.commit_author = None
    github.commit_author_email = "12345+Octo-Owner@users.noreply.github.com"
    await request_gate(bot)
    gate = the_gate(bot)

    await click(bot, "U0OWNER01", "release_approve", gate.id or 0)  # identities: octo-owner
    assert "you authored 1 of the commits" in told(slack, "U0OWNER01")
    assert the_gate(bot).status == "pending"
