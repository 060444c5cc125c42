"""Releasing a flag on any other system through the signed flag webhook: each gated step
and the kill switch reach the receiver as a signed JSON body, retried with the same
delivery id when the receiver fails, refused for good when it says no, all audited."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.config import Config, parse_config
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_flags import flag_bot
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import example_config_data
from tests.test_flags_launchdarkly import FLAG, audited, deploy, flag_click, run_checks

HOST = "flags.acme.example"
SECRET = "flag-hook-secret-0123456789"


class FlagReceiver:
    """The team's own flag service: checks the signature over the raw body, answers the
    statuses queued first, then 200 with an id."""

    def __init__(self, edge: FakeEdge) -> None:
        self.edge = edge
        self.requests: list[httpx.Request] = []
        self.applied: list[dict[str, Any]] = []
        self.queued: list[int] = []

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != HOST:
            return self.edge.transport.handle_request(request)
        self.requests.append(request)
        expected = (
            "sha256=" + hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        )
        if request.headers.get("x-releasebot-signature") != expected:
            return httpx.Response(401, json={"error": "bad signature"})
        if self.queued:
            return httpx.Response(self.queued.pop(0), json={"error": "try again"})
        self.applied.append(json.loads(request.content))
        return httpx.Response(200, json={"id": f"change-{len(self.applied)}"})


def webhook_config() -> Config:
    data = example_config_data()
    flag = data["services"]["checkout"]["release"]["flags"][0]
    flag.pop("launchdarkly")
    flag["webhook"] = {"url": f"https://{HOST}/releasebot", "secret_env": "FLAG_HOOK_SECRET"}
    return parse_config(data)


@pytest.fixture
def receiver(edge: FakeEdge) -> FlagReceiver:
    return FlagReceiver(edge)


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, receiver: FlagReceiver, app_private_key: str
) -> AsyncIterator[Bot]:
    async with flag_bot(
        bot_factory,
        clock,
        app_private_key,
        transport=receiver.transport,
        environ={"FLAG_HOOK_SECRET": SECRET},
        config=webhook_config(),
    ) as running:
        yield running


async def test_steps_and_the_kill_switch_reach_the_receiver_signed_and_retried(
    bot: Bot, slack: FakeSlackWebApi, receiver: FlagReceiver, clock: FrozenClock
) -> None:
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)

    receiver.queued = [503]  # the receiver is down for the first attempt
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    clock.advance(minutes=5)
    await bot.send_outbox()  # the retry, with the same delivery id
    first, retry = receiver.requests
    assert first.headers["x-releasebot-delivery"] == retry.headers["x-releasebot-delivery"]
    assert first.content == retry.content
    [applied] = receiver.applied
    assert applied == {
        "event": "flag.change",
        "service": "checkout",
        "environment": "production",
        "flag": FLAG,
        "action": "rollout",
        "percent": applied["percent"],
        "step_id": applied["step_id"],
        "deployment_id": deployment_id,
    }
    assert applied["percent"] > 0

    await flag_click(bot, "U0RM2", "release_kill_switch", deployment_id)
    assert receiver.applied[-1]["action"] == "off" and receiver.applied[-1]["percent"] == 0
    delivered = audited(bot, "flag.delivered")
    assert [d["action"] for d in delivered] == ["rollout", "off"]
    assert [d["receipt"]["id"] for d in delivered] == ["change-1", "change-2"]
    assert SECRET not in json.dumps(delivered)


async def test_a_receiver_that_refuses_the_change_is_given_up_on_and_audited(
    bot: Bot, slack: FakeSlackWebApi, receiver: FlagReceiver, clock: FrozenClock
) -> None:
    deployment_id = await deploy(bot)
    await run_checks(bot, clock)
    receiver.queued = [400]
    await flag_click(bot, "U0RM1", "release_flag", deployment_id)
    clock.advance(minutes=5)
    await bot.send_outbox()
    assert len(receiver.requests) == 1  # a 4xx is not retried
    assert receiver.applied == []
    assert audited(bot, "flag.delivered") == []
    [failed] = audited(bot, "flag.failed")
    assert "webhook: POST /releasebot: 400" in json.dumps(failed)
