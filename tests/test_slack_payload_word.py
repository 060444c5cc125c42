"""A slash command whose text holds the word "payload", signed as Slack signs it, through the
real app and Bolt's real signature check: answered as any other command, while an interactive
`payload=` body still dispatches and a badly signed body is still refused."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from bot.store.tables import FreezeWindow
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub
from tests.helpers import slack_headers
from tests.slackflow import CHANNEL, click, request_gate, the_gate, told
from tests.test_slash_commands import Slash, shown

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


@pytest.fixture
def slash(bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]) -> Slash:
    return Slash(bot, slack, slack_server[1])


def freezes(bot: Bot) -> list[FreezeWindow]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(FreezeWindow)).all())


def command_body(base_url: str, user: str, text: str) -> tuple[bytes, str]:
    """A `/release` slash command form as Slack posts it, and its response token."""
    token = uuid.uuid4().hex
    form = {
        "token": "verification-token",
        "team_id": "T0SANDBOX",
        "channel_id": CHANNEL,
        "user_id": user,
        "command": "/release",
        "text": text,
        "api_app_id": "A0RELBOT",
        "response_url": f"{base_url}/response/{token}",
        "trigger_id": f"trigger-{token}",
    }
    return urlencode(form).encode(), token


async def test_a_command_whose_text_says_payload_is_answered_and_clicks_still_dispatch(
    slash: Slash, bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM
    await request_gate(bot)

    frozen = shown(await slash("U0RM1", "freeze production 2h payload bug"))
    assert "production is frozen until" in frozen and "payload bug" in frozen
    [window] = freezes(bot)
    assert (window.environment, window.created_by, window.reason) == (
        "production",
        "U0RM1",
        "payload bug",
    )

    status = shown(await slash("U0STRANGER", "status payload-api"))
    assert "There is no service `payload-api`" in status

    # an interactive `payload=` body (whose JSON itself says "payload") is read as before
    gate = the_gate(bot)
    await click(bot, "U0RM2", "release_approve", gate.id or 0)
    assert "production is frozen: payload bug; use break-glass" in told(slack, "U0RM2")
    assert the_gate(bot).status == "pending"


async def test_a_badly_signed_command_saying_payload_is_refused_and_the_signed_one_answered(
    bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]
) -> None:
    body, token = command_body(slack_server[1], "U0RM1", "freeze production 2h payload bug")
    forged = slack_headers(body, content_type="application/x-www-form-urlencoded", secret="x")
    refused = await bot.post("/slack/events", body, forged)
    assert refused.status_code == 401
    signed_other = slack_headers(b"text=status", content_type="application/x-www-form-urlencoded")
    assert (await bot.post("/slack/events", body, signed_other)).status_code == 401
    await bot.send_outbox()
    assert freezes(bot) == [] and slack.responses(token) == []

    signed = slack_headers(body, content_type="application/x-www-form-urlencoded")
    answer = await bot.post("/slack/events", body, signed)
    assert answer.status_code == 200, answer.text
    await bot.send_outbox()
    [reply] = slack.responses(token)
    assert "production is frozen until" in shown(reply)
    assert [w.reason for w in freezes(bot)] == ["payload bug"]
