"""WebApiSlackSender through a real AsyncWebClient against the fake Slack Web API."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.errors import DeliveryFailed
from bot.ports import PostedMessage, SlackSender
from integrations.sandbox.webapi import FakeSlackWebApi
from integrations.slack.sender import WebApiSlackSender, make_web_client
from tests.servers import serve_in_thread

TOKEN = "xoxb-test-4242-secret"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeSlackWebApi, str]]:
    fake = FakeSlackWebApi()
    with serve_in_thread(fake.app()) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(served: tuple[FakeSlackWebApi, str]) -> FakeSlackWebApi:
    served[0].reset()
    return served[0]


@pytest.fixture
def sender(served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi) -> WebApiSlackSender:
    return WebApiSlackSender(AsyncWebClient(token=TOKEN, base_url=f"{served[1]}/api/"))


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_sender_satisfies_the_port(sender: WebApiSlackSender) -> None:
    port: SlackSender = sender
    assert port is sender


async def test_post_then_update_changes_the_message_in_place(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*v42* deploying"}}]

    posted = await sender.post_message(channel="#releases", text="v42 deploying", blocks=blocks)
    await sender.update_message(channel=posted.channel, ts=posted.ts, text="v42 deployed")

    assert posted == PostedMessage(channel=fake.channel_id("#releases") or "", ts=posted.ts)
    assert posted.channel.startswith("C")  # Slack answers a #name post with the channel id
    [message] = fake.messages("#releases")
    assert message["ts"] == posted.ts
    assert message["text"] == "v42 deployed"
    assert message["blocks"] == blocks
    assert message["edited"] is True
    assert [call.token for call in fake.calls] == [TOKEN, TOKEN]


async def test_update_replaces_blocks_when_given(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "done"}}]
    posted = await sender.post_message(channel="#releases", text="a")

    await sender.update_message(channel="#releases", ts=posted.ts, text="b", blocks=new_blocks)

    assert fake.messages("#releases")[0]["blocks"] == new_blocks


async def test_a_thread_reply_lands_in_the_thread(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    parent = await sender.post_message(channel="#releases", text="v42")

    reply = await sender.post_message(channel="#releases", text="canary ok", thread_ts=parent.ts)

    assert reply.ts != parent.ts
    assert [m["text"] for m in fake.thread("#releases", parent.ts)] == ["v42", "canary ok"]
    assert [m["ts"] for m in fake.messages("#releases")] == [parent.ts]


async def test_a_rate_limit_is_retryable_after_the_given_seconds(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    fake.fail_next("chat.postMessage", retry_after=7)

    with pytest.raises(DeliveryFailed) as caught:
        await sender.post_message(channel="#releases", text="v42")

    failure = caught.value
    assert (failure.retryable, failure.retry_after, failure.status) == (True, 7.0, 429)
    assert failure.reason == "chat.postMessage: ratelimited (HTTP 429)"
    assert TOKEN not in str(failure)
    assert len(fake.calls_to("chat.postMessage")) == 1  # the outbox retries, not the client


async def test_a_server_error_is_retryable(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    fake.fail_next("chat.update", status=500, error="internal_error")

    with pytest.raises(DeliveryFailed) as caught:
        await sender.update_message(channel="#releases", ts="1700000000.000100", text="x")

    assert caught.value.retryable is True
    assert caught.value.status == 500
    assert caught.value.retry_after is None
    assert caught.value.reason.startswith("chat.update: ")
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("code", ["ratelimited", "service_unavailable", "fatal_error"])
async def test_slack_trouble_reported_as_ok_false_is_retryable(
    sender: WebApiSlackSender, fake: FakeSlackWebApi, code: str
) -> None:
    fake.fail_next("chat.postMessage", status=200, error=code)

    with pytest.raises(DeliveryFailed) as caught:
        await sender.post_message(channel="#releases", text="v42")

    assert caught.value.retryable is True
    assert caught.value.reason == f"chat.postMessage: {code}"


async def test_channel_not_found_is_not_retryable(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await sender.post_message(channel="nowhere", text="v42")

    assert caught.value.retryable is False
    assert caught.value.status == 200
    assert caught.value.reason == "chat.postMessage: channel_not_found"
    assert TOKEN not in str(caught.value)


async def test_updating_a_missing_message_is_not_retryable(
    sender: WebApiSlackSender, fake: FakeSlackWebApi
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await sender.update_message(channel="#releases", ts="1.000001", text="x")

    assert caught.value.retryable is False
    assert caught.value.reason == "chat.update: message_not_found"


async def test_a_refused_connection_is_retryable() -> None:
    client = make_web_client(TOKEN, f"http://127.0.0.1:{closed_port()}/api/")

    with pytest.raises(DeliveryFailed) as caught:
        await WebApiSlackSender(client).post_message(channel="#releases", text="v42")

    assert caught.value.retryable is True
    assert caught.value.status is None
    assert caught.value.reason.startswith("chat.postMessage: ")
    assert TOKEN not in str(caught.value)
