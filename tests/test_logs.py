"""Logs an operator can search: JSON lines with the ids of what was being done, request ids
echoed to callers, and never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot.cli import main
from bot.cli.common import secret_values
from bot.logs import (
    REDACTED,
    configure_logging,
    current_ids,
    log_context,
    logged_ids,
    make_handler,
    request_id_from,
)
from bot.settings import SettingsError, load_settings
from tests.conftest import TEST_SECRETS, BotFactory
from tests.helpers import deployment_status, encode, github_headers

log = logging.getLogger("releasebot.test")


class Captured:
    """What a JSON handler on the root logger wrote, one parsed object per line."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    yield from _capture()


def _capture(level: int = logging.INFO, secrets: tuple[str, ...] = ()) -> Iterator[Captured]:
    out = Captured()
    handler = make_handler("json", secrets=secrets, stream=out.stream)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


# --- the format ------------------------------------------------------------------------


def test_a_json_line_has_the_fields_and_the_bound_ids(captured: Captured) -> None:
    with log_context(deployment_id=3, release_id=2, gate_id=7, delivery_id="d-1"):
        log.warning("gate %s waits", 7)
    log.info("outside")
    first, second = captured.lines()
    assert first["level"] == "WARNING"
    assert first["logger"] == "releasebot.test"
    assert first["message"] == "gate 7 waits"
    assert first["ts"].endswith("+00:00")
    assert (first["deployment_id"], first["release_id"], first["gate_id"]) == (3, 2, 7)
    assert first["delivery_id"] == "d-1"
    assert "exc" not in first
    assert second["message"] == "outside"
    assert not {"deployment_id", "gate_id", "request_id"} & set(second)


def test_an_exception_is_one_line_with_exc(captured: Captured) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    [line] = captured.lines()
    assert line["message"] == "it failed"
    assert "RuntimeError: boom" in line["exc"] and "Traceback" in line["exc"]
    assert captured.text.count("\n") == 1


def test_extra_ids_win_over_bound_ones(captured: Captured) -> None:
    with log_context(deployment_id=1):
        log.warning("x", extra={"deployment_id": 9})
    assert captured.lines()[0]["deployment_id"] == 9


async def test_ids_follow_awaits_threads_and_tasks(captured: Captured) -> None:
    async def later() -> None:
        await asyncio.sleep(0)
        log.warning("in a task")

    @logged_ids("gate_id")
    async def decide(*, gate_id: int) -> dict[str, object]:
        await asyncio.to_thread(log.warning, "in a thread")
        await asyncio.create_task(later())
        return current_ids()

    with log_context(request_id="req-1"):
        seen = await decide(gate_id=5)
    assert seen == {"request_id": "req-1", "gate_id": 5}
    assert current_ids() == {}
    lines = captured.lines()
    assert [line["message"] for line in lines] == ["in a thread", "in a task"]
    assert all((line["request_id"], line["gate_id"]) == ("req-1", 5) for line in lines)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="not a log field: colour"), log_context(colour=1):
        pass
    with pytest.raises(ValueError, match="not a log field"):
        logged_ids("user_id")


def test_secret_values_are_redacted_in_both_formats() -> None:
    for fmt in ("json", "text"):
        stream = io.StringIO()
        handler = make_handler(fmt, secrets=["hunter2-secret", "abc"], stream=stream)
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "token %s", ("hunter2-secret",), None
        )
        handler.emit(record)
        assert "hunter2-secret" not in stream.getvalue()
        assert REDACTED in stream.getvalue()


def test_configure_logging_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging(level="info", fmt="text", stream=io.StringIO())
        configure_logging(level="warning", fmt="json", stream=stream)
        ours = [h for h in root.handlers if h not in before[0]]
        assert len(ours) == 1 and root.level == logging.WARNING
        log.warning("hello")
        assert json.loads(stream.getvalue())["message"] == "hello"
        chatty = logging.getLogger("apscheduler.executors.default")
        assert chatty.getEffectiveLevel() == logging.WARNING
        configure_logging(level="debug", fmt="json", stream=stream)
        assert chatty.getEffectiveLevel() == logging.DEBUG
    finally:
        for handler in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(handler)
        root.setLevel(before[1])
        logging.getLogger("apscheduler.executors.default").setLevel(logging.NOTSET)


# --- the setting -------------------------------------------------------------------------


def test_the_log_format_setting() -> None:
    assert load_settings({}).log_format == "text"
    assert load_settings({"RELEASEBOT_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="RELEASEBOT_LOG_FORMAT='xml' is not a log format"):
        load_settings({"RELEASEBOT_LOG_FORMAT": "xml"})


def test_serve_refuses_an_unknown_log_format_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELEASEBOT_LOG_FORMAT", "yaml")
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("releasebot cannot start: RELEASEBOT_LOG_FORMAT='yaml'")
    assert "Traceback" not in err


# --- request ids -------------------------------------------------------------------------


def test_a_request_id_is_taken_when_plain_and_made_otherwise() -> None:
    assert request_id_from("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "a b", "x" * 129, "é", 'quote"'):
        made = request_id_from(bad)
        assert len(made) == 32 and int(made, 16) >= 0


async def test_requests_echo_their_id_and_log_lines_carry_it(
    bot_factory: BotFactory, captured: Captured
) -> None:
    async with bot_factory() as bot:
        given = await bot.http.get("/healthz", headers={"X-Request-Id": "trace-42"})
        made = await bot.http.get("/healthz", headers={"X-Request-Id": "no spaces allowed"})
        body = encode(deployment_status("success"))
        headers = {
            **github_headers("deployment_status", body, secret="wrong"),
            "X-Request-Id": "r-7",
        }
        refused = await bot.post("/webhooks/github", body, headers)
        good = github_headers("deployment_status", body, delivery="delivery-42")
        accepted = await bot.post("/webhooks/github", body, good)
    assert given.headers["x-request-id"] == "trace-42"
    assert made.headers["x-request-id"] != "no spaces allowed"
    assert len(made.headers["x-request-id"]) == 32
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-7"
    lines = captured.lines()
    [refusal] = [line for line in lines if "refused" in line["message"]]
    assert refusal["request_id"] == "r-7"
    assert (
        refusal["message"]
        == "github webhook refused with 401: invalid X-Hub-Signature-256 signature"
    )
    [recorded] = [
        line
        for line in lines
        if line["message"].startswith("github ") and "accepted" in line["message"]
    ]
    assert recorded["request_id"] == accepted.headers["x-request-id"]
    assert recorded["delivery_id"] == "delivery-42"
    assert recorded["deployment_id"] >= 1


# --- never a secret ------------------------------------------------------------------------

MORE_SECRETS = {
    "GITLAB_WEBHOOK_TOKEN": "gitlab-hook-token-for-tests",
    "GITLAB_TOKEN": "glpat-test-token-value",
    "ARGOCD_WEBHOOK_SECRET": "argocd-hook-secret-for-tests",
    "JENKINS_WEBHOOK_SECRET": "jenkins-hook-secret-for-tests",
    "RELEASEBOT_GENERIC_WEBHOOK_SECRET": "generic-hook-secret-for-tests",
    "RELEASEBOT_API_TOKEN": "api-token-for-tests",
    "RELEASEBOT_DASHBOARD_TOKEN": "dashboard-token-for-tests",
    "GITHUB_TOKEN": "ghp_test-token-value",
}


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_start_up_and_a_refused_webhook_log_no_secret(
    bot_factory: BotFactory, environ: dict[str, str], level: int
) -> None:
    """At INFO our own lines hold no secret with nothing to redact them; at DEBUG (where
    libraries say more) the handler `serve` configures keeps them out too."""
    env = {**environ, **MORE_SECRETS, "RELEASEBOT_LOG_FORMAT": "json"}
    settings = load_settings(env)
    secrets = {v for v in secret_values(settings) if v} | set(TEST_SECRETS.values())
    assert len(secrets) >= 10
    redact = tuple(secret_values(settings)) if level == logging.DEBUG else ()
    for out in _capture(level, redact):
        async with bot_factory(env=MORE_SECRETS) as bot:
            body = encode(deployment_status("success"))
            for secret in ("wrong", *secrets):
                headers = github_headers("deployment_status", body, secret=secret[::-1])
                answer = await bot.post("/webhooks/github", body, headers)
                assert answer.status_code == 401
            await bot.http.get("/readyz")
        assert out.lines(), "nothing was logged"
        assert any("refused" in line["message"] for line in out.lines())
        leaked = sorted(s for s in secrets if s in out.text or s[::-1] in out.text)
        assert leaked == []
