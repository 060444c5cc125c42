"""Slack sends an Events API delivery again (same `event_id`, `X-Slack-Retry-Num`) when its
first answer was late or lost: the copy is acknowledged and answered once, on any replica."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.store.tables import WebhookDelivery
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import slack_headers


@pytest.fixture
def bot(gated_bot: Bot) -> Bot:
    return gated_bot


def home_opened(user: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": "T0SANDBOX",
            "api_app_id": "A0RELBOT",
            "type": "event_callback",
            "event_id": event_id,
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


async def deliver(bot: Bot, body: bytes, *, retry: int | None = None) -> None:
    headers = slack_headers(body, content_type="application/json")
    if retry is not None:
        headers |= {"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"}
    answer = await bot.post("/slack/events", body, headers)
    assert answer.status_code == 200, answer.text


async def test_an_event_slack_sends_again_is_answered_once(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = home_opened("U0RM1", "Ev0RETRIED01")
    await deliver(bot, body)
    await deliver(bot, body, retry=1)
    await deliver(bot, body, retry=2)
    assert len(slack.calls_to("views.publish")) == 1

    await deliver(bot, home_opened("U0RM1", "Ev0ANOTHER02"))  # a new event is answered
    assert len(slack.calls_to("views.publish")) == 2

    with bot.runtime.db.read() as session:
        seen = session.exec(
            select(WebhookDelivery).where(WebhookDelivery.provider == "slack")
        ).all()
    assert sorted((d.delivery_id, d.event) for d in seen) == [
        ("Ev0ANOTHER02", "app_home_opened"),
        ("Ev0RETRIED01", "app_home_opened"),
    ]


async def test_a_retry_reaching_another_replica_is_answered_once(
    bot_factory: BotFactory, clock: FrozenClock, slack: FakeSlackWebApi
) -> None:
    """Two app instances on one database: what one answered, the other knows."""
    overrides = Overrides(
        clock=clock, start_scheduler=False, run_outbox_worker=False, process_before_response=True
    )
    body = home_opened("U0RM1", "Ev0REPLICA03")
    async with bot_factory(overrides=overrides) as one, bot_factory(overrides=overrides) as two:
        await deliver(one, body)
        await deliver(two, body, retry=1)
    assert len(slack.calls_to("views.publish")) == 1
