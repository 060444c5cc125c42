"""Hostile input, signed so it gets past the signature: a clear 4xx, nothing stored, never 5xx.

Each test here reproduced a failure first: JSON nested 50,000 deep (RecursionError), a lone
surrogate in a body (UnicodeEncodeError when stored), delivery ids cut at 200 characters (the
second of two long ids answered `duplicate`), `X-Slack-Request-Timestamp: abc` (ValueError),
and `/release freeze all 99999999999d` (OverflowError, and no answer at all).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from bot.store.tables import AuditEvent, FreezeWindow, WebhookDelivery
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import (
    ARGOCD_SECRET,
    GENERIC_SECRET,
    GITLAB_TOKEN,
    JENKINS_SECRET,
    argocd_body,
    argocd_headers,
    database_unreachable,
    deployment_status,
    encode,
    generic_body,
    github_headers,
    gitlab_headers,
    gitlab_job,
    jenkins_build,
    rows,
    signed_headers,
    slack_headers,
)
from tests.slackflow import gated_overrides

API_TOKEN = "api-token-for-hostile-tests"
HOSTILE_ENV = {
    "GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET,
    "JENKINS_WEBHOOK_SECRET": JENKINS_SECRET,
    "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    "RELEASEBOT_API_TOKEN": API_TOKEN,
}
DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
FORM = "application/x-www-form-urlencoded"


def stored(bot: Bot) -> tuple[int, int]:
    """How many deliveries and audit records the bot holds."""
    return len(rows(bot, WebhookDelivery)), len(rows(bot, AuditEvent))


def api_headers() -> dict[str, str]:
    return {"content-type": "application/json", "authorization": f"Bearer {API_TOKEN}"}


Signer = Callable[[bytes], tuple[str, dict[str, str]]]

SIGNED: dict[str, Signer] = {
    "github": lambda body: ("/webhooks/github", github_headers("deployment_status", body)),
    "gitlab": lambda body: ("/webhooks/gitlab", gitlab_headers("Job Hook")),
    "argocd": lambda body: ("/webhooks/argocd", argocd_headers()),
    "jenkins": lambda body: ("/webhooks/jenkins", signed_headers(body, JENKINS_SECRET)),
    "generic": lambda body: ("/webhooks/generic", signed_headers(body, GENERIC_SECRET)),
    "gates": lambda body: ("/api/v1/gates", api_headers()),
    "slack-event": lambda body: (
        "/slack/events",
        slack_headers(body, content_type="application/json"),
    ),
}


@pytest.fixture
async def hostile_bot(bot_factory: BotFactory) -> Any:
    async with bot_factory(env=HOSTILE_ENV) as running:
        yield running


# --- JSON nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(SIGNED))
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
async def test_json_nested_50000_deep_is_refused_before_parsing(
    hostile_bot: Bot, route: str, body: bytes
) -> None:
    path, headers = SIGNED[route](body)
    answer = await hostile_bot.post(path, body, headers)
    assert answer.status_code == 400, answer.text
    assert "nested deeper than 64 levels" in answer.json()["error"]
    assert stored(hostile_bot) == (0, 0)


async def test_a_slack_click_nested_50000_deep_is_refused(hostile_bot: Bot) -> None:
    body = urlencode({"payload": '{"type": "block_actions", "x": ' + DEEP.decode() + "}"}).encode()
    answer = await hostile_bot.post("/slack/events", body, slack_headers(body, content_type=FORM))
    assert answer.status_code == 400
    assert "nested deeper than 64 levels" in answer.json()["error"]
    assert stored(hostile_bot) == (0, 0)


async def test_nesting_within_the_limit_and_brackets_in_strings_are_accepted(
    hostile_bot: Bot,
) -> None:
    payload = deployment_status("success")
    payload["deployment"]["payload"] = {"deep": json.loads("[" * 50 + "]" * 50)}
    payload["deployment"]["description"] = "[" * 5000 + "{" * 5000
    body = encode(payload)
    answer = await hostile_bot.post(
        "/webhooks/github", body, github_headers("deployment_status", body)
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"


async def test_a_slack_body_over_the_size_limit_is_refused(bot_factory: BotFactory) -> None:
    async with bot_factory(env={"RELEASEBOT_MAX_BODY_BYTES": "1000"}) as bot:
        body = encode({"type": "event_callback", "padding": "x" * 2000})
        answer = await bot.post(
            "/slack/events", body, slack_headers(body, content_type="application/json")
        )
        assert answer.status_code == 413
        assert answer.json() == {"error": "body exceeds 1000 bytes"}


# --- text that cannot be stored --------------------------------------------------------------


def _with_text(route: str, text: str) -> bytes:
    bodies: dict[str, dict[str, Any]] = {
        "github": deployment_status("success", creator=text),
        "gitlab": {**gitlab_job("success"), "user": {"name": text}},
        "argocd": {**argocd_body("sync-succeeded"), "initiatedBy": text},
        "jenkins": {**jenkins_build("COMPLETED", "SUCCESS"), "name": text},
        "generic": generic_body(actor=text),
        "gates": {"service": "payments-batch", "environment": "production", "version": text},
        "slack-event": {"type": "event_callback", "event_id": "Ev1", "event": {"text": text}},
    }
    return json.dumps(bodies[route]).encode()


@pytest.mark.parametrize("route", sorted(SIGNED))
@pytest.mark.parametrize(
    ("text", "reason"),
    [("bad \ud800 text", "lone surrogate"), ("bad \x00 text", "NUL character")],
    ids=["surrogate", "nul"],
)
async def test_text_that_cannot_be_stored_is_refused(
    hostile_bot: Bot, route: str, text: str, reason: str
) -> None:
    body = _with_text(route, text)
    assert b"\\u" in body  # json.dumps escapes both, as a hostile sender would
    path, headers = SIGNED[route](body)
    answer = await hostile_bot.post(path, body, headers)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]
    assert stored(hostile_bot) == (0, 0)


async def test_a_surrogate_pair_is_ordinary_text(hostile_bot: Bot) -> None:
    body = encode(deployment_status("success", creator="rocket \U0001f680"))
    assert b"\\ud83d\\ude80" in body
    answer = await hostile_bot.post(
        "/webhooks/github", body, github_headers("deployment_status", body)
    )
    assert answer.status_code == 202, answer.text


# --- delivery ids ------------------------------------------------------------------------------


async def test_delivery_ids_are_never_cut_into_false_duplicates(hostile_bot: Bot) -> None:
    prefix = "d" * 200
    for n, tail in enumerate(["-first", "-second"]):
        body = encode(deployment_status("success", deployment_id=1000 + n))
        answer = await hostile_bot.post(
            "/webhooks/github",
            body,
            github_headers("deployment_status", body, delivery=prefix + tail),
        )
        assert answer.status_code == 400
        assert answer.json() == {
            "error": f"X-GitHub-Delivery is {200 + len(tail)} characters long; "
            "at most 200 are accepted"
        }
    assert stored(hostile_bot) == (0, 0)

    # Two different ids of exactly 200 characters are two deliveries.
    for n, last in enumerate("xy"):
        body = encode(deployment_status("success", deployment_id=2000 + n))
        answer = await hostile_bot.post(
            "/webhooks/github",
            body,
            github_headers("deployment_status", body, delivery="d" * 199 + last),
        )
        assert answer.json()["status"] == "accepted"
    assert {d.delivery_id[-1] for d in rows(hostile_bot, WebhookDelivery)} == {"x", "y"}


@pytest.mark.parametrize("route", ["gitlab", "argocd", "jenkins", "generic"])
async def test_every_provider_refuses_an_over_long_delivery_id(
    hostile_bot: Bot, route: str
) -> None:
    long_id = "k" * 201
    body = _with_text(route, "alice")
    path, headers = SIGNED[route](body)
    headers = {
        **headers,
        "idempotency-key" if route == "gitlab" else "x-releasebot-delivery": long_id,
    }
    answer = await hostile_bot.post(path, body, headers)
    assert answer.status_code == 400
    assert "201 characters long; at most 200 are accepted" in answer.json()["error"]
    assert stored(hostile_bot) == (0, 0)


# --- Slack's headers and numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x-slack-request-timestamp": "abc"},
        {"x-slack-request-timestamp": "9" * 5000},
        {"x-slack-request-timestamp": " 12"},
        {"x-slack-signature": "v0=\xe9\xe9"},
    ],
    ids=["letters", "5000-digits", "space", "latin-1-signature"],
)
async def test_a_slack_header_that_is_not_a_timestamp_or_signature_is_401(
    bot: Bot, headers: dict[str, str]
) -> None:
    body = urlencode({"command": "/release", "text": "help", "user_id": "U0RM1"}).encode()
    signed = {**slack_headers(body, content_type=FORM), **headers}
    answer = await bot.http.post(
        "/slack/events",
        content=body,
        headers={k.encode(): v.encode("latin-1") for k, v in signed.items()},
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid request"}


class Typed:
    """`/release <text>` typed by Rita, signed as Slack signs it; returns her answer."""

    def __init__(self, bot: Bot, slack: FakeSlackWebApi, base_url: str) -> None:
        self.bot, self.slack, self.base_url = bot, slack, base_url

    async def __call__(self, text: str) -> str:
        token = uuid.uuid4().hex
        form = {
            "team_id": "T0SANDBOX",
            "channel_id": "#checkout-deploys",
            "user_id": "U0RM1",
            "command": "/release",
            "text": text,
            "response_url": f"{self.base_url}/response/{token}",
            "trigger_id": f"trigger-{token}",
        }
        body = urlencode(form).encode()
        answer = await self.bot.post("/slack/events", body, slack_headers(body, content_type=FORM))
        assert answer.status_code == 200, answer.text
        [reply] = self.slack.responses(token)
        assert reply["response_type"] == "ephemeral"
        return json.dumps(reply)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("freeze all 99999999999d hostile", "a freeze from slack lasts at most 30d"),
        ("freeze all 99999999999999999999ms x", "a freeze from slack lasts at most 30d"),
        ("freeze all 1" + "0" * 5000 + "h x", "a freeze from slack lasts at most 30d"),
        ("metrics 99999999999", "days must be between 1 and 365"),
        ("metrics checkout " + "9" * 5000, "days must be between 1 and 365"),
    ],
    ids=["days", "milliseconds", "5000-digits", "metrics-days", "metrics-5000-digits"],
)
async def test_numbers_out_of_range_get_a_clear_answer(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
    text: str,
    said: str,
) -> None:
    async with bot_factory(overrides=gated_overrides(clock, FakeEdge())) as bot:
        typed = Typed(bot, slack, slack_server[1])
        assert said in (await typed(text)).lower()
        assert rows(bot, FreezeWindow) == []


async def test_a_history_count_of_5000_digits_shows_the_most_there_is(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
) -> None:
    async with bot_factory(overrides=gated_overrides(clock, FakeEdge())) as bot:
        typed = Typed(bot, slack, slack_server[1])
        assert "checkout" in await typed("history checkout production " + "9" * 5000)


# --- the one handler for the unexpected ------------------------------------------------------


async def test_an_unexpected_error_is_a_logged_500_with_its_request_id(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """The database losing a table mid-flight is nothing a handler expects."""
    with bot.runtime.db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE webhook_delivery"))
    body = encode(deployment_status("success"))
    headers = {**github_headers("deployment_status", body), "x-request-id": "req-hostile-1"}
    with caplog.at_level(logging.ERROR):
        answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error", "request_id": "req-hostile-1"}
    assert answer.headers["x-request-id"] == "req-hostile-1"
    [line] = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert "POST /webhooks/github (request req-hostile-1)" in line.getMessage()
    assert line.exc_info is not None


async def test_a_database_that_cannot_be_reached_is_a_503_to_retry_and_stores_nothing(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart or a cut: new connections are refused (SQLite: a file that cannot be
    opened; PostgreSQL: nothing listening). The sender is told to try again."""
    body = encode(deployment_status("success"))
    headers = {**github_headers("deployment_status", body), "x-request-id": "req-down-1"}
    with caplog.at_level(logging.WARNING), database_unreachable(bot.runtime.db.engine):
        answer = await bot.post("/webhooks/github", body, headers)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {
        "error": "database unavailable; try again",
        "request_id": "req-down-1",
    }
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
    with bot.runtime.db.read() as session:
        assert session.exec(sa.select(sa.func.count()).select_from(WebhookDelivery)).one() == (0,)


# --- Slack payloads in shapes Slack never sends (found by tests/test_fuzz_inbound.py) --------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "event_callback", "event_id": "Ev1", "event": None}, "payload.event"),
        ({"type": "event_callback", "event_id": "Ev2", "event": True}, "payload.event"),
        ({"type": "block_actions", "user": "U0RM1", "actions": []}, "payload.user"),
        (
            {"type": "block_actions", "user": {"id": "U0RM1"}, "actions": [{"value": "1"}]},
            "action_id",
        ),
        (
            {"type": "view_submission", "user": {"id": "U0RM1"}, "view": {"state": None}},
            "view.state",
        ),
        ({"type": "block_actions", "team": 7}, "payload.team"),
    ],
    ids=["event-null", "event-bool", "user-text", "no-action-id", "state-null", "team-number"],
)
async def test_a_slack_payload_in_a_shape_slack_never_sends_is_refused(
    bot: Bot, payload: dict[str, Any], reason: str
) -> None:
    if payload["type"] == "event_callback":
        body = json.dumps(payload).encode()
        headers = slack_headers(body, content_type="application/json")
    else:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        headers = slack_headers(body, content_type=FORM)
    answer = await bot.post("/slack/events", body, headers)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert stored(bot) == (0, 0)


async def test_an_event_no_listener_takes_is_acknowledged(bot: Bot) -> None:
    body = encode({"type": "event_callback", "event_id": "Ev9", "event": {"type": "reaction"}})
    answer = await bot.post(
        "/slack/events", body, slack_headers(body, content_type="application/json")
    )
    assert answer.status_code == 200  # a 404 would only make Slack send it again


async def test_a_mention_whose_reply_slack_refuses_is_still_acknowledged(
    bot_factory: BotFactory, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with bot_factory(overrides=gated_overrides(clock, FakeEdge())) as bot:
        body = encode(
            {
                "type": "event_callback",
                "event_id": "Ev10",
                "event": {"type": "app_mention", "text": "hi", "ts": "1.0", "channel": "C0NONE"},
            }
        )
        with caplog.at_level(logging.ERROR):
            answer = await bot.post(
                "/slack/events", body, slack_headers(body, content_type="application/json")
            )
        assert answer.status_code == 200
        assert any("failed after acknowledging" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("raw", [b"\x17", b"a", b"x=1"])
async def test_a_slack_body_labelled_json_that_is_not_is_refused(bot: Bot, raw: bytes) -> None:
    headers = slack_headers(raw, content_type="application/json; charset=utf-8")
    answer = await bot.post("/slack/events", raw, headers)
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]


async def test_a_slack_body_with_a_byte_order_mark_is_refused(bot: Bot) -> None:
    raw = b"\xef\xbb\xbf{}"
    answer = await bot.post(
        "/slack/events", raw, slack_headers(raw, content_type="application/json")
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "body starts with a byte order mark"}


@pytest.mark.parametrize(
    ("offset", "answers"), [("1" + "0" * 30, 1), ("Infinity", 0), ("[[[[1]]]]", 0)]
)
async def test_a_page_click_with_an_offset_out_of_range_is_answered_or_ignored(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
    offset: str,
    answers: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A number far past the last page shows the last (empty) page; what is no whole
    number is ignored, as any click without a valid value is. Neither fails in the database."""
    token = uuid.uuid4().hex
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": "U0RM1"},
        "trigger_id": "trigger-page",
        "response_url": f"{slack_server[1]}/response/{token}",
        "container": {"type": "message", "is_ephemeral": True, "channel_id": "#checkout-deploys"},
        "channel": {"id": "#checkout-deploys"},
        "actions": [
            {
                "type": "button",
                "action_id": "release_list_page",
                "block_id": "page",
                "value": '{"t": "status", "o": ' + offset + "}",
                "action_ts": "1.0",
            }
        ],
    }
    async with bot_factory(overrides=gated_overrides(clock, FakeEdge())) as bot:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        with caplog.at_level(logging.WARNING):
            answer = await bot.post("/slack/events", body, slack_headers(body, content_type=FORM))
        assert answer.status_code == 200
        assert len(slack.responses(token)) == answers
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
