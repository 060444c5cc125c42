"""POST /webhooks/github through the real app: signatures, parsing, dedup, Slack messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from bot.store.tables import Deployment, OutboxMessage, WebhookDelivery
from integrations.github import payloads
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.helpers import (
    SHA_A,
    deployment_status,
    encode,
    fixture,
    fixture_files,
    github_headers,
    github_signature,
)


def rows(bot: Bot, model: Any) -> list[Any]:
    with bot.runtime.db.read() as session:
        return list(session.exec(select(model)).all())


@pytest.mark.parametrize("path", fixture_files("github"), ids=lambda p: p.stem)
def test_every_published_github_payload_parses(path: Path) -> None:
    event_name = path.stem.split("__")[0]
    parsed = payloads.parse(event_name, fixture("github", path.name))
    reviewed = path.stem in ("deployment_review__approved", "deployment_review__rejected")
    if event_name in ("deployment", "deployment_status", "workflow_run") or reviewed:
        assert parsed.event is not None, parsed.note
        assert len(parsed.event.sha) == 40
        assert parsed.event.target.repo
        assert parsed.event.status in ("pending", "in_progress", "succeeded", "failed")
    else:
        assert parsed.event is None
        assert parsed.note


def test_the_github_documented_signature_vector_matches() -> None:
    assert github_signature(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


async def test_a_deploy_posts_one_message_then_edits_it_and_replies_in_its_thread(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = encode(deployment_status("in_progress"))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()

    [message] = slack.messages("#checkout-deploys")
    assert "checkout" in message["text"] and "Deploying" in message["text"]
    header = message["blocks"][0]["text"]["text"]
    assert header.startswith("checkout → production")
    assert len(slack.calls_to("chat.postMessage")) == 2  # the message and one thread line

    body = encode(deployment_status("success"))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.json()["status"] == "accepted"
    await bot.send_outbox()

    [message] = slack.messages("#checkout-deploys")
    assert message["edited"] is True
    assert "Verifying" in message["text"]  # deployed; production's checks run next
    thread = slack.thread("#checkout-deploys", message["ts"])
    replies = [m["text"] for m in thread[1:]]
    assert len(replies) == 3
    assert "Deploying" in replies[0] and "Deployed" in replies[1]
    assert "was in progress" in replies[1]
    assert "Verifying" in replies[2] and "6 checks planned" in replies[2]
    [deployment] = rows(bot, Deployment)
    assert deployment.state == "verifying"
    assert deployment.deployed_at is not None
    assert deployment.sha == SHA_A


async def test_the_same_delivery_twice_gives_one_deployment_and_one_message(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    body = encode(deployment_status("in_progress"))
    headers = github_headers("deployment_status", body, delivery="delivery-1")
    first = await bot.post("/webhooks/github", body, headers)
    second = await bot.post("/webhooks/github", body, headers)
    await bot.send_outbox()

    assert first.json() == {"status": "accepted", "delivery": "delivery-1"}
    assert second.status_code == 202
    assert second.json() == {"status": "duplicate", "delivery": "delivery-1"}
    assert len(rows(bot, Deployment)) == 1
    assert len(rows(bot, WebhookDelivery)) == 1
    assert len(slack.messages("#checkout-deploys")) == 1


async def test_form_encoded_deliveries_work_like_json(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = urlencode({"payload": encode(deployment_status("success")).decode()}).encode()
    headers = github_headers("deployment_status", body)
    headers["content-type"] = "application/x-www-form-urlencoded"
    answer = await bot.post("/webhooks/github", body, headers)
    await bot.send_outbox()
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    assert len(slack.messages("#checkout-deploys")) == 1


async def test_the_raw_body_is_kept_with_the_delivery(bot: Bot) -> None:
    body = encode(deployment_status("success"))
    await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    [delivery] = rows(bot, WebhookDelivery)
    assert delivery.body == body
    assert delivery.outcome == "accepted"


async def test_a_workflow_run_is_tracked_through_the_configured_workflow(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    run = fixture("github", "workflow_run__completed-success.json")
    run["repository"]["full_name"] = "acme/checkout"
    run["workflow_run"]["path"] = ".github/workflows/deploy-staging.yml"
    body = encode(run)
    answer = await bot.post("/webhooks/github", body, github_headers("workflow_run", body))
    await bot.send_outbox()
    assert answer.json()["status"] == "accepted"
    [deployment] = rows(bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "checkout",
        "staging",
        "verifying",
    )
    assert deployment.ci_url == run["workflow_run"]["html_url"]


async def test_ping_is_accepted_and_unknown_events_are_ignored(bot: Bot) -> None:
    ping = encode(fixture("github", "ping__default.json"))
    answer = await bot.post("/webhooks/github", ping, github_headers("ping", ping))
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"

    push = encode(fixture("github", "push__default.json"))
    answer = await bot.post("/webhooks/github", push, github_headers("push", push))
    assert answer.status_code == 202 and answer.json()["status"] == "ignored"
    assert rows(bot, Deployment) == []


async def test_a_repository_no_service_tracks_is_ignored(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(deployment_status("success", repo="someone/else"))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    await bot.send_outbox()
    assert answer.status_code == 202
    assert answer.json()["status"] == "ignored"
    assert "no configured service" in answer.json()["detail"]
    assert rows(bot, Deployment) == []
    assert slack.calls_to("chat.postMessage") == []


async def test_a_stale_status_after_success_changes_nothing(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    for state in ("success", "in_progress"):
        body = encode(deployment_status(state))
        await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    await bot.send_outbox()
    [deployment] = rows(bot, Deployment)
    assert deployment.state == "verifying"
    [message] = slack.messages("#checkout-deploys")
    assert "Verifying" in message["text"]


async def test_a_newer_version_supersedes_a_pending_one(bot: Bot) -> None:
    older = encode(deployment_status("pending"))
    newer = encode(
        deployment_status(
            "pending", sha="9e602444f49b8b69c3a9a51fa97a115f3d323508", deployment_id=2
        )
    )
    await bot.post("/webhooks/github", older, github_headers("deployment_status", older))
    await bot.post("/webhooks/github", newer, github_headers("deployment_status", newer))
    states = {d.sha[:7]: d.state for d in rows(bot, Deployment)}
    assert states == {"f95f852": "superseded", "9e60244": "pending"}


# --- refused requests change nothing -------------------------------------------------------


async def assert_nothing_changed(bot: Bot, slack: FakeSlackWebApi) -> None:
    await bot.send_outbox()
    assert rows(bot, WebhookDelivery) == []
    assert rows(bot, Deployment) == []
    assert rows(bot, OutboxMessage) == []
    assert slack.calls == []


async def test_a_wrong_signature_is_refused(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(deployment_status("success"))
    headers = github_headers("deployment_status", body, secret="not the secret")
    answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 401
    assert "signature" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


async def test_a_missing_signature_is_refused(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(deployment_status("success"))
    headers = github_headers("deployment_status", body)
    del headers["x-hub-signature-256"]
    answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 401
    await assert_nothing_changed(bot, slack)


async def test_without_a_configured_secret_everything_is_refused(
    bot_factory: BotFactory, slack: FakeSlackWebApi
) -> None:
    async with bot_factory(env={"GITHUB_WEBHOOK_SECRET": None}) as bot:
        body = encode(deployment_status("success"))
        answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 401
        assert "not configured" in answer.json()["error"]
        await assert_nothing_changed(bot, slack)


async def test_malformed_json_is_a_400(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = b'{"deployment": '
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


async def test_a_missing_field_is_a_400_naming_it(bot: Bot, slack: FakeSlackWebApi) -> None:
    payload = deployment_status("success")
    del payload["deployment"]["sha"]
    body = encode(payload)
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 400
    assert answer.json()["error"] == "deployment.sha is required"
    await assert_nothing_changed(bot, slack)


async def test_an_oversized_body_is_a_413(bot_factory: BotFactory, slack: FakeSlackWebApi) -> None:
    async with bot_factory(env={"RELEASEBOT_MAX_BODY_BYTES": "2048"}) as bot:
        body = encode(deployment_status("success"))
        assert len(body) > 2048
        answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 413
        await assert_nothing_changed(bot, slack)


async def test_a_wrong_content_type_is_a_415(bot: Bot, slack: FakeSlackWebApi) -> None:
    body = encode(deployment_status("success"))
    headers = github_headers("deployment_status", body)
    headers["content-type"] = "text/plain"
    answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 415
    await assert_nothing_changed(bot, slack)
