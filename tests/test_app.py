"""The app as operators and Slack see it: health, readiness, metrics, Slack's front door."""

from __future__ import annotations

import json
import logging
import time

import pytest

from bot import migrate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.helpers import (
    FIXTURES,
    deployment_status,
    encode,
    github_headers,
    slack_headers,
)


async def test_healthz_answers_while_the_process_serves(bot: Bot) -> None:
    answer = await bot.http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_readyz_reports_the_schema_and_the_outbox(bot: Bot) -> None:
    answer = await bot.http.get("/readyz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ready"] is True
    assert body["migration"] == migrate.head()
    assert body["outbox"] == {"pending": 0, "dead": 0, "oldest_pending": None}


async def test_readyz_is_503_with_the_reason_when_migrations_are_behind(bot: Bot) -> None:
    migrate.downgrade(bot.runtime.db.engine, "base")
    answer = await bot.http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["ready"] is False
    assert "releasebot db upgrade" in answer.json()["reason"]


async def test_metrics_count_webhooks_by_outcome_and_time_requests(bot: Bot) -> None:
    body = encode(deployment_status("success"))
    await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    await bot.post("/webhooks/github", body, github_headers("deployment_status", body, secret="x"))
    answer = await bot.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'releasebot_webhooks_total{outcome="accepted",provider="github"} 1.0' in text
    assert 'releasebot_webhooks_total{outcome="refused_401",provider="github"} 1.0' in text
    pending = (await bot.http.get("/readyz")).json()["outbox"]["pending"]
    assert pending >= 5  # the message, its edits and thread lines, and more
    assert f"releasebot_outbox_backlog {float(pending)}" in text
    assert (
        "releasebot_http_request_duration_seconds_count"
        '{method="POST",route="/webhooks/github",status="2xx"} 1.0'
    ) in text


async def test_slack_url_verification_is_answered_when_signed(bot: Bot) -> None:
    body = (FIXTURES / "slack" / "url_verification__docs.json").read_bytes()
    challenge = json.loads(body)["challenge"]
    answer = await bot.post(
        "/slack/events", body, slack_headers(body, content_type="application/json")
    )
    assert answer.status_code == 200
    assert challenge in answer.text


@pytest.mark.parametrize(
    ("secret", "age"),
    [("wrong-secret", 0), (None, 301)],
    ids=["wrong signature", "timestamp older than five minutes"],
)
async def test_slack_requests_with_a_bad_signature_are_refused(
    bot: Bot, slack: FakeSlackWebApi, secret: str | None, age: int
) -> None:
    body = (FIXTURES / "slack" / "url_verification__docs.json").read_bytes()
    kwargs = {"secret": secret} if secret else {}
    headers = slack_headers(
        body, content_type="application/json", timestamp=int(time.time()) - age, **kwargs
    )
    answer = await bot.post("/slack/events", body, headers)
    assert answer.status_code == 401
    assert slack.calls == []


async def test_without_a_signing_secret_slack_requests_are_refused(
    bot_factory: BotFactory,
) -> None:
    async with bot_factory(env={"SLACK_SIGNING_SECRET": None}) as bot:
        body = (FIXTURES / "slack" / "url_verification__docs.json").read_bytes()
        answer = await bot.post(
            "/slack/events", body, slack_headers(body, content_type="application/json")
        )
        assert answer.status_code == 401


async def test_without_a_slack_token_messages_go_to_the_log_as_text(
    bot_factory: BotFactory, slack: FakeSlackWebApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with bot_factory(env={"SLACK_BOT_TOKEN": None}) as bot:
        body = encode(deployment_status("success"))
        answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
        assert answer.status_code == 202
        await bot.send_outbox()
    warnings = [r for r in caplog.records if "SLACK_BOT_TOKEN is not set" in r.getMessage()]
    assert len(warnings) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "releasebot.slack")
    assert "== checkout → production" in logged
    assert "Deployed" in logged
    assert slack.calls == []
