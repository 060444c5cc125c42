"""POST /webhooks/generic through the real app: the CONTRACT.md schema, field by field."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import Overrides
from bot.config import parse_config
from bot.ports import Commit
from bot.store.tables import Deployment, OutboxMessage, Release, WebhookDelivery
from integrations.generic import payloads
from integrations.payloads import PayloadError
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FrozenClock
from tests.helpers import (
    ARGOCD_SECRET,
    GENERIC_SECRET,
    REPO_ROOT,
    SHA_A,
    SHA_B,
    argocd_body,
    argocd_headers,
    encode,
    example_config_data,
    generic_body,
    rows,
    signed_headers,
)


def test_a_full_body_parses_with_its_commits_and_base() -> None:
    parsed = payloads.parse(generic_body("started"))
    event = parsed.event
    assert event is not None
    assert event.target.provider == "generic"
    assert (event.target.service, event.target.environment) == ("payments-batch", "production")
    assert (event.sha, event.status, event.version) == (SHA_A, "in_progress", "v2.3.0")
    assert (event.url, event.actor) == ("https://ci.example/run/42", "alice")
    assert parsed.previous_sha == SHA_B
    assert parsed.commits == (
        Commit(
            sha=SHA_A,
            message="Batch payouts in one transaction",
            author="Alice",
            authored_at=datetime(2026, 11, 16, 14, 4, 5, tzinfo=UTC),
        ),
    )


def test_only_service_environment_sha_and_status_are_required() -> None:
    body = {"service": "payments-batch", "environment": "production", "sha": SHA_A}
    parsed = payloads.parse({**body, "status": "failed"})
    assert parsed.event is not None and parsed.event.status == "failed"
    assert (parsed.commits, parsed.previous_sha, parsed.event.url) == ((), None, None)


def test_the_documented_example_has_the_fields_the_parser_reads() -> None:
    """docs/generic-webhook.md's example names exactly the fields generic_body() fills in."""
    section = (REPO_ROOT / "docs" / "generic-webhook.md").read_text()
    example = re.search(r"```json\n(.*?)```", section, flags=re.S)
    assert example is not None
    keys = set(re.findall(r'"(\w+)":', example.group(1)))
    assert keys == set(generic_body()) | {"message", "author", "timestamp"}
    assert payloads.parse(generic_body()).event is not None


def field_error(**fields: Any) -> str:
    with pytest.raises(PayloadError) as raised:
        payloads.parse(generic_body(**fields))
    return str(raised.value)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"service": None}, "service is required"),
        ({"service": 7}, "service must be a string"),
        ({"environment": ""}, "environment is required"),
        (
            {"sha": None, "version": None},
            "sha is required (or a version, for a deploy without a commit)",
        ),
        ({"sha": None, "version": "   "}, "version must not be blank"),
        ({"sha": "f95f852"}, "sha must be a full commit sha (40 hex characters)"),
        ({"status": "done"}, "status must be one of started, succeeded, failed"),
        ({"version": ["v1"]}, "version must be a string"),
        ({"url": "ftp://ci.example/run/42"}, "url must be an http or https URL"),
        ({"url": "https://"}, "url must be an http or https URL"),
        ({"actor": {"login": "alice"}}, "actor must be a string"),
        ({"actor": "a" * 201}, "actor must be at most 200 characters"),
        ({"previous_sha": "nope"}, "previous_sha must be a full commit sha (40 hex characters)"),
        ({"commits": {"sha": SHA_A}}, "commits must be a list"),
        ({"commits": ["fix"]}, "commits[0] must be a JSON object"),
    ],
)
def test_a_wrong_field_is_named(fields: dict[str, Any], error: str) -> None:
    assert field_error(**fields) == error


@pytest.mark.parametrize(
    ("commit", "error"),
    [
        ({"sha": None}, "commits[2].sha is required"),
        ({"sha": "abc"}, "commits[2].sha must be a full commit sha (40 hex characters)"),
        ({"message": None}, "commits[2].message is required"),
        ({"author": 3}, "commits[2].author must be a string"),
        ({"timestamp": None}, "commits[2].timestamp is required"),
        ({"timestamp": "yesterday"}, "commits[2].timestamp must be an ISO 8601 time"),
        ({"timestamp": "2026-11-16T15:04:05"}, "commits[2].timestamp must be an ISO 8601 time"),
    ],
)
def test_a_wrong_commit_field_is_named_with_its_index(commit: dict[str, Any], error: str) -> None:
    good = generic_body()["commits"][0]
    commits = [good, good, {**good, **commit}]
    assert field_error(commits=commits).startswith(error)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(list(generic_body())),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=50)
        | st.sampled_from([SHA_A, "started", "https://ci.example/1"])
        | st.lists(
            st.dictionaries(
                st.sampled_from(["sha", "message", "author", "timestamp"]),
                st.none() | st.integers() | st.text(max_size=30) | st.just(SHA_A),
            ),
            max_size=3,
        ),
    )
)
def test_any_body_either_parses_or_is_a_payload_error(body: dict[str, Any]) -> None:
    try:
        payloads.parse(body)
    except PayloadError:
        pass


# --- through the app ----------------------------------------------------------------------


@pytest.fixture
async def generic_bot(bot_factory: BotFactory) -> AsyncIterator[Bot]:
    async with bot_factory(env={"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET}) as running:
        yield running


async def post(bot: Bot, body: dict[str, Any], **kwargs: Any) -> Any:
    raw = encode(body)
    return await bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET, **kwargs))


async def test_a_deploy_posts_one_message_then_edits_it(
    generic_bot: Bot, slack: FakeSlackWebApi
) -> None:
    answer = await post(generic_bot, generic_body("started"))
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    await generic_bot.send_outbox()
    [message] = slack.messages("#deploys")  # payments-batch has no channel of its own
    assert "Deploying" in message["text"]

    answer = await post(generic_bot, generic_body("succeeded"))
    assert answer.json()["status"] == "accepted"
    await generic_bot.send_outbox()
    [message] = slack.messages("#deploys")
    assert message["edited"] is True and "Deployed" in message["text"]
    [deployment] = rows(generic_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "payments-batch",
        "production",
        "succeeded",
    )
    assert (deployment.ci_url, deployment.deployer) == ("https://ci.example/run/42", "alice")
    [release] = rows(generic_bot, Release)
    assert release.version == "v2.3.0"


async def test_an_unconfigured_service_is_ignored_with_a_reason(generic_bot: Bot) -> None:
    answer = await post(generic_bot, generic_body(service="no-such-service"))
    assert answer.status_code == 202
    assert answer.json()["status"] == "ignored"
    assert answer.json()["detail"] == (
        "no configured service tracks generic:no-such-service environment production"
    )
    answer = await post(generic_bot, generic_body(environment="staging"))
    assert answer.json()["status"] == "ignored"
    assert rows(generic_bot, Deployment) == []


async def test_deliveries_are_deduplicated_by_header_or_by_body(generic_bot: Bot) -> None:
    first = await post(generic_bot, generic_body(), delivery="run-42-done")
    again = await post(generic_bot, generic_body("failed"), delivery="run-42-done")
    assert first.json() == {"status": "accepted", "delivery": "run-42-done"}
    assert again.json() == {"status": "duplicate", "delivery": "run-42-done"}

    body = generic_body(sha=SHA_B)
    unnamed = await post(generic_bot, body)
    resent = await post(generic_bot, body)
    assert unnamed.json()["status"] == "accepted"
    assert resent.json() == {"status": "duplicate", "delivery": unnamed.json()["delivery"]}
    assert len(rows(generic_bot, WebhookDelivery)) == 2


async def test_reports_from_two_systems_about_one_version_share_one_deployment(
    bot_factory: BotFactory, clock: FrozenClock, slack: FakeSlackWebApi
) -> None:
    """A script reports the start, Argo CD the end: one deployment, one message edited."""
    data = example_config_data()
    [production] = data["services"]["storefront"]["environments"]
    production["track"]["generic"] = True
    overrides = Overrides(
        config=parse_config(data), clock=clock, start_scheduler=False, run_outbox_worker=False
    )
    env = {
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
        "ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET,
    }
    async with bot_factory(env=env, overrides=overrides) as bot:
        started = await post(bot, generic_body("started", service="storefront"))
        assert started.json()["status"] == "accepted"
        await bot.send_outbox()
        [message] = slack.messages("#storefront-deploys")
        assert "Deploying" in message["text"]

        synced = await bot.post(
            "/webhooks/argocd", encode(argocd_body("sync-succeeded")), argocd_headers()
        )
        assert synced.json()["status"] == "accepted"
        await bot.send_outbox()

        [deployment] = rows(bot, Deployment)
        assert (deployment.service, deployment.environment, deployment.sha) == (
            "storefront",
            "production",
            SHA_A,
        )
        assert deployment.state == "verifying"  # storefront production checks its health next
        assert deployment.source == "generic.deploy"
        [message] = slack.messages("#storefront-deploys")
        assert message["edited"] is True and "Verifying" in message["text"]
        assert len(slack.calls_to("chat.update")) >= 1


# --- refused requests change nothing -------------------------------------------------------


async def assert_nothing_changed(bot: Bot, slack: FakeSlackWebApi) -> None:
    await bot.send_outbox()
    assert rows(bot, WebhookDelivery) == []
    assert rows(bot, Deployment) == []
    assert rows(bot, OutboxMessage) == []
    assert slack.calls == []


async def test_a_wrong_signature_is_refused(generic_bot: Bot, slack: FakeSlackWebApi) -> None:
    raw = encode(generic_body())
    answer = await generic_bot.post("/webhooks/generic", raw, signed_headers(raw, "not it"))
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid X-Releasebot-Signature signature"}
    await assert_nothing_changed(generic_bot, slack)


async def test_a_missing_signature_is_refused(generic_bot: Bot, slack: FakeSlackWebApi) -> None:
    raw = encode(generic_body())
    answer = await generic_bot.post("/webhooks/generic", raw, {"content-type": "application/json"})
    assert answer.status_code == 401
    await assert_nothing_changed(generic_bot, slack)


async def test_without_a_configured_secret_everything_is_refused(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    answer = await post(bot, generic_body())
    assert answer.status_code == 401
    assert "not configured" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


async def test_a_wrong_field_is_a_400_naming_it(generic_bot: Bot, slack: FakeSlackWebApi) -> None:
    good = generic_body()["commits"][0]
    body = generic_body(commits=[good, good, {**good, "timestamp": "last tuesday"}])
    answer = await post(generic_bot, body)
    assert answer.status_code == 400
    assert answer.json() == {"error": "commits[2].timestamp must be an ISO 8601 time"}
    await assert_nothing_changed(generic_bot, slack)


async def test_malformed_json_is_a_400(generic_bot: Bot, slack: FakeSlackWebApi) -> None:
    raw = b'{"service": "payments-batch",'
    answer = await generic_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    await assert_nothing_changed(generic_bot, slack)


async def test_a_body_that_is_not_an_object_is_a_400(
    generic_bot: Bot, slack: FakeSlackWebApi
) -> None:
    raw = b'["payments-batch"]'
    answer = await generic_bot.post("/webhooks/generic", raw, signed_headers(raw, GENERIC_SECRET))
    assert answer.status_code == 400
    assert answer.json() == {"error": "body must be a JSON object"}
    await assert_nothing_changed(generic_bot, slack)


async def test_an_oversized_body_is_a_413(bot_factory: BotFactory, slack: FakeSlackWebApi) -> None:
    env = {"RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET, "RELEASEBOT_MAX_BODY_BYTES": "300"}
    async with bot_factory(env=env) as bot:
        body = generic_body()
        assert len(encode(body)) > 300
        answer = await post(bot, body)
        assert answer.status_code == 413
        await assert_nothing_changed(bot, slack)


async def test_a_wrong_content_type_is_a_415(generic_bot: Bot, slack: FakeSlackWebApi) -> None:
    raw = encode(generic_body())
    headers = signed_headers(raw, GENERIC_SECRET)
    headers["content-type"] = "application/x-www-form-urlencoded"
    answer = await generic_bot.post("/webhooks/generic", raw, headers)
    assert answer.status_code == 415
    await assert_nothing_changed(generic_bot, slack)
