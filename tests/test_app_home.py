"""App Home: a release manager opens the Home tab, sees the approval waiting for them, and
approves it from there; the click goes through the same listener as on the message."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot
from tests.fakes import FakeGitHub
from tests.helpers import slack_headers
from tests.slackflow import request_gate, the_gate
from tests.test_slash_commands import Slash, deploy, seed_open_gates

MEDIUM = [{"filename": "Dockerfile", "status": "modified", "additions": 1600, "deletions": 400}]


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


async def open_home(bot: Bot, slack: FakeSlackWebApi, user: str) -> dict[str, Any]:
    """Slack's `app_home_opened` event for `user`, signed; returns the view published."""
    body = json.dumps(
        {
            "token": "verification-token",
            "team_id": "T0SANDBOX",
            "api_app_id": "A0RELBOT",
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": f"D{user[1:]}",
                "tab": "home",
                "event_ts": str(time.time()),
            },
        }
    ).encode()
    answer = await bot.post(
        "/slack/events", body, slack_headers(body, content_type="application/json")
    )
    assert answer.status_code == 200, answer.text
    view = slack.home_view(user)
    assert view is not None, "nothing was published"
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    return view


async def click_in_home(bot: Bot, view: dict[str, Any], user: str, button: dict[str, Any]) -> None:
    """A button in the Home tab: the payload carries the view, not a channel."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "container": {"type": "view", "view_id": view["id"]},
        "view": {"id": view["id"], "type": "home", "blocks": view["blocks"]},
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": "b",
                "value": button["value"],
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


def home_buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def home_text(view: dict[str, Any]) -> str:
    parts: list[str] = []
    for block in view["blocks"]:
        if block["type"] in ("section", "header"):
            parts.append(block["text"]["text"])
        elif block["type"] == "context":
            parts.extend(e["text"] for e in block["elements"])
    return "\n".join(parts)


async def test_a_release_manager_approves_from_app_home(
    bot: Bot, slack: FakeSlackWebApi, github: FakeGitHub
) -> None:
    github.commit_author = "someone-else"
    github.compare_files = MEDIUM  # one release manager must approve
    await request_gate(bot)
    gate = the_gate(bot)
    assert gate.status == "pending"

    view = await open_home(bot, slack, "U0RM1")
    text = home_text(view)
    assert "*Waiting for your approval* (1)" in text
    assert "*checkout* → *production*" in text
    assert "0 of 1 approvals" in text
    approve, reject = home_buttons(view)
    assert (approve["action_id"], approve["value"]) == ("release_approve", str(gate.id))
    assert (reject["action_id"], reject["value"]) == ("release_reject", str(gate.id))

    stranger = await open_home(bot, slack, "U0STRANGER")
    assert "Nothing is waiting for you." in home_text(stranger)
    assert home_buttons(stranger) == []

    await click_in_home(bot, view, "U0RM1", approve)
    assert the_gate(bot).status == "approved"
    assert [d["state"] for d in github.decisions()] == ["approved"]
    [answer] = slack.messages("U0RM1")  # App Home has no channel: the answer comes as a DM
    assert "approved: the release goes ahead" in answer["text"]

    again = await open_home(bot, slack, "U0RM1")
    assert again["id"] == view["id"]  # the same Home tab, republished
    assert "Nothing is waiting for you." in home_text(again)


async def test_owners_see_their_services_releases_and_everyone_sees_freezes(
    bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]
) -> None:
    await deploy(bot, "success")
    await Slash(bot, slack, slack_server[1])("U0RM1", "freeze staging 1h load test")

    owner = home_text(await open_home(bot, slack, "U0OWNER01"))  # owners: [U0OWNER01]
    assert "*Recent releases of your services* (checkout)" in owner
    assert "*checkout* `production`" in owner
    assert ":snowflake: *staging*" in owner and "load test" in owner and "<@U0RM1>" in owner

    other = home_text(await open_home(bot, slack, "U0SRE1"))
    assert "You own no service" in other
    assert ":snowflake: *staging*" in other


async def test_the_home_tab_stays_within_its_block_limit(bot: Bot, slack: FakeSlackWebApi) -> None:
    seed_open_gates(bot, 60)
    view = await open_home(bot, slack, "U0RM1")
    text = home_text(view)
    assert "*Waiting for your approval* (60)" in text
    assert "and 40 more: `/release pending` pages through them" in text
    assert len(home_buttons(view)) == 40  # 20 shown, Approve and Reject each
    assert len(view["blocks"]) <= 100
