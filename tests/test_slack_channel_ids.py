"""A post in doubt in a channel configured by `#name` is looked for by the channel's id.

Slack's conversations.history and conversations.replies take channel ids only. The sender
learns the id of a `#name` from its posts' answers, or lists the channels once
(conversations.list, page by page) and keeps what it read; a name it cannot find is listed
again only minutes later. Through a real AsyncWebClient against the fake Slack Web API.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.errors import DeliveryFailed
from integrations.sandbox.webapi import FakeSlackWebApi
from integrations.slack.channels import RELIST_SECONDS
from integrations.slack.sender import WebApiSlackSender
from tests.servers import serve_in_thread

TOKEN = "xoxb-test-4242-secret"
TAG = {"event_type": "releasebot_release", "event_payload": {"deployment_id": 7}}


class Seconds:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
def seconds() -> Seconds:
    return Seconds()


def new_sender(served: tuple[FakeSlackWebApi, str], seconds: Seconds) -> WebApiSlackSender:
    """A sender as a freshly started process has it: no channel id known yet."""
    return WebApiSlackSender(
        AsyncWebClient(token=TOKEN, base_url=f"{served[1]}/api/"), clock=seconds
    )


async def test_the_id_a_post_was_answered_with_is_what_the_lookup_reads(
    served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi, seconds: Seconds
) -> None:
    sender = new_sender(served, seconds)
    posted = await sender.post_message(channel="#releases", text="v42", metadata=TAG)

    found = await sender.find_message(channel="#releases", oldest=0.0, metadata=TAG)

    assert found == posted
    assert found is not None and found.channel == fake.channel_id("#releases")
    assert fake.calls_to("conversations.list") == []  # learnt from the post's answer
    [lookup] = fake.calls_to("conversations.history")
    assert lookup.params["channel"] == fake.channel_id("#releases")


async def test_a_name_is_listed_page_by_page_once_and_every_page_read_is_kept(
    served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi, seconds: Seconds
) -> None:
    fake.add_channels(*(f"#team-{number:04d}" for number in range(1500)))
    posted = await new_sender(served, seconds).post_message(
        channel="#releases", text="v42", metadata=TAG
    )
    # A thread line in another channel named by name.
    line_tag = {"event_type": "releasebot_thread_line", "event_payload": {"outbox_id": 3}}
    parent = await new_sender(served, seconds).post_message(channel="#team-0002", text="v7")
    await new_sender(served, seconds).post_message(
        channel="#team-0002", text="line", thread_ts=parent.ts, metadata=line_tag
    )
    sender = new_sender(served, seconds)  # a restarted process: it knows no id

    found = await sender.find_message(channel="#releases", oldest=0.0, metadata=TAG)
    in_thread = await sender.find_message(
        channel="#team-0002", oldest=0.0, metadata=line_tag, thread_ts=parent.ts
    )

    assert found == posted
    assert in_thread is not None and in_thread.channel == fake.channel_id("#team-0002")
    first, second = fake.calls_to("conversations.list")  # 1501 channels: two pages, once
    for call in (first, second):
        assert call.params["types"] == "public_channel,private_channel"
        assert call.params["exclude_archived"] in (True, "1", "true")
        assert str(call.params["limit"]) == "1000"
    assert "cursor" not in first.params and second.params["cursor"]
    [replies] = fake.calls_to("conversations.replies")
    assert replies.params["channel"] == fake.channel_id("#team-0002")


async def test_a_name_not_found_is_listed_again_only_minutes_later(
    served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi, seconds: Seconds
) -> None:
    fake.add_channels("#releases")
    sender = new_sender(served, seconds)

    for _ in range(3):
        with pytest.raises(DeliveryFailed) as caught:
            await sender.find_message(channel="#relaeses", oldest=0.0, metadata=TAG)
        assert caught.value.retryable is False
        assert "#relaeses" in caught.value.reason
    assert len(fake.calls_to("conversations.list")) == 1
    assert fake.calls_to("conversations.history") == []

    fake.add_channels("#relaeses")  # created since
    seconds.now += RELIST_SECONDS
    assert await sender.find_message(channel="#relaeses", oldest=0.0, metadata=TAG) is None
    assert len(fake.calls_to("conversations.list")) == 2
    [lookup] = fake.calls_to("conversations.history")
    assert lookup.params["channel"] == fake.channel_id("#relaeses")


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [(429, "ratelimited", 9), (503, "service_unavailable", None)],
)
async def test_a_listing_slack_cannot_answer_now_is_retryable(
    served: tuple[FakeSlackWebApi, str],
    fake: FakeSlackWebApi,
    seconds: Seconds,
    status: int,
    error: str,
    retry_after: int | None,
) -> None:
    fake.add_channels("#releases")
    fake.fail_next("conversations.list", status=status, error=error, retry_after=retry_after)
    sender = new_sender(served, seconds)

    with pytest.raises(DeliveryFailed) as caught:
        await sender.find_message(channel="#releases", oldest=0.0, metadata=TAG)

    failure = caught.value
    assert (failure.retryable, failure.status) == (True, status)
    assert failure.retry_after == (None if retry_after is None else float(retry_after))
    assert fake.calls_to("conversations.history") == []
    # The next attempt lists again at once: a failed listing is no listing.
    assert await sender.find_message(channel="#releases", oldest=0.0, metadata=TAG) is None
    assert len(fake.calls_to("conversations.list")) == 2


async def test_a_missing_scope_is_not_retryable_and_names_the_error(
    served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi, seconds: Seconds
) -> None:
    fake.add_channels("#releases")
    fake.fail_next("conversations.list", status=200, error="missing_scope")

    with pytest.raises(DeliveryFailed) as caught:
        await new_sender(served, seconds).find_message(
            channel="#releases", oldest=0.0, metadata=TAG
        )

    assert caught.value.retryable is False
    assert caught.value.reason == "conversations.list: missing_scope"
    assert TOKEN not in caught.value.reason


async def test_an_id_is_read_as_it_is_without_listing(
    served: tuple[FakeSlackWebApi, str], fake: FakeSlackWebApi, seconds: Seconds
) -> None:
    sender = new_sender(served, seconds)
    posted = await sender.post_message(channel="C0RELEASES", text="v42", metadata=TAG)

    assert await sender.find_message(channel="C0RELEASES", oldest=0.0, metadata=TAG) == posted
    assert fake.calls_to("conversations.list") == []
