"""Older self-managed GitLab sends neither Idempotency-Key nor X-Gitlab-Event-UUID.

Such hooks are accepted (refusing them would make GitLab disable the hook) and a resend is
recognised by its event name and body.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.store.tables import Deployment, WebhookDelivery
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.helpers import GITLAB_TOKEN, encode, gitlab_job, rows


def old_gitlab_headers(event: str, *, token: str = GITLAB_TOKEN) -> dict[str, str]:
    """What GitLab before 17.4 (and before the event UUID) sends with a hook."""
    return {
        "content-type": "application/json",
        "x-gitlab-event": event,
        "x-gitlab-token": token,
        "user-agent": "GitLab/15.11.0",
    }


@pytest.fixture
async def gitlab_bot(bot_factory: BotFactory) -> Any:
    async with bot_factory(env={"GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN}) as running:
        yield running


async def test_a_hook_without_ids_is_accepted_and_its_resend_is_a_duplicate(
    gitlab_bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = encode(gitlab_job("success"))
    first = await gitlab_bot.post("/webhooks/gitlab", body, old_gitlab_headers("Job Hook"))
    again = await gitlab_bot.post("/webhooks/gitlab", body, old_gitlab_headers("Job Hook"))
    await gitlab_bot.send_outbox()

    assert first.status_code == 202 and first.json()["status"] == "accepted"
    assert again.status_code == 202
    assert again.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    [deployment] = rows(gitlab_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "ledger",
        "production",
        "succeeded",
    )
    assert len(rows(gitlab_bot, WebhookDelivery)) == 1
    [message] = slack.messages("#ledger-deploys")
    assert "Deployed" in message["text"]


async def test_hooks_without_ids_but_different_bodies_are_both_accepted(
    gitlab_bot: Bot, slack: FakeSlackWebApi
) -> None:
    running = await gitlab_bot.post(
        "/webhooks/gitlab", encode(gitlab_job("running")), old_gitlab_headers("Job Hook")
    )
    done = await gitlab_bot.post(
        "/webhooks/gitlab", encode(gitlab_job("success")), old_gitlab_headers("Job Hook")
    )
    await gitlab_bot.send_outbox()

    assert [running.json()["status"], done.json()["status"]] == ["accepted", "accepted"]
    assert running.json()["delivery"] != done.json()["delivery"]
    assert len(rows(gitlab_bot, WebhookDelivery)) == 2
    [deployment] = rows(gitlab_bot, Deployment)
    assert deployment.state == "succeeded"
    [message] = slack.messages("#ledger-deploys")
    assert message["edited"] is True and "Deployed" in message["text"]


async def test_the_same_body_under_another_event_name_is_another_delivery(
    gitlab_bot: Bot,
) -> None:
    body = encode(gitlab_job("success"))
    job = await gitlab_bot.post("/webhooks/gitlab", body, old_gitlab_headers("Job Hook"))
    other = await gitlab_bot.post("/webhooks/gitlab", body, old_gitlab_headers("Push Hook"))
    assert job.json()["delivery"] != other.json()["delivery"]
    assert other.status_code == 202 and other.json()["status"] == "ignored"


async def test_a_hook_without_ids_and_a_wrong_token_is_still_refused(gitlab_bot: Bot) -> None:
    body = encode(gitlab_job("success"))
    answer = await gitlab_bot.post(
        "/webhooks/gitlab", body, old_gitlab_headers("Job Hook", token="wrong")
    )
    assert answer.status_code == 401
    assert rows(gitlab_bot, WebhookDelivery) == []
