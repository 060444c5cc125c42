"""`releasebot gate request`: the exit codes a CI job relies on, without ever sleeping.

Most tests talk to a fake of the gates API (httpx.MockTransport) with an injected clock
and sleep; one drives the real app (its lifespan running in an anyio blocking portal, reached
by a sync httpx.Client) while a release manager approves in Slack between two polls.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlencode

import anyio.from_thread
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlmodel import select
from starlette.applications import Starlette

from bot.app import Overrides, create_app
from bot.cli import GateApiError, build_parser, main, run_gate, wait_for_decision
from bot.config import parse_config
from bot.settings import load_settings
from bot.store.tables import Gate
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.fakes import FrozenClock
from tests.helpers import example_config_data, slack_headers

TOKEN = "api-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REQUEST = ["gate", "request", "--service", "payments-batch", "--env", "production"]
Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def gate(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "status": status,
        "final": status != "pending",
        "service": "payments-batch",
        "environment": "production",
        "version": "v2.3.0",
        "sha": None,
        "progress": "0 of 1 approvals: waiting for 1 more from S0RELMGRS",
        "decided_by": None,
        "reason": None,
        "approvals": [],
        **extra,
    }


class FakeGatesApi:
    """POST answers `created`; each GET answers the next of `polls` (the last one repeats)."""

    def __init__(self, polls: list[Reply], created: Reply | None = None) -> None:
        self.polls = polls
        self.created = created or httpx.Response(201, json=gate("pending"))
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            reply = self.created
        else:
            assert request.url.path == "/api/v1/gates/7"
            reply = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        return reply if isinstance(reply, httpx.Response) else reply(request)

    def client(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.MockTransport(self.handle), base_url="http://bot", headers=AUTH
        )

    def gets(self) -> int:
        return sum(1 for r in self.requests if r.method == "GET")


class FakeTime:
    """monotonic() and sleep() that only move together, and remember every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ok(status: str, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json=gate(status, **extra))


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def run(api: FakeGatesApi, *argv: str, clock: FakeTime | None = None) -> int:
    clock = clock or FakeTime()
    args = build_parser().parse_args([*REQUEST, "--version", "v2.3.0", *argv])
    with api.client() as client:
        return run_gate(args, client, sleep=clock.sleep, monotonic=clock.monotonic)


# --- wait_for_decision -----------------------------------------------------------------------


def test_waiting_polls_at_the_interval_until_approved() -> None:
    api = FakeGatesApi([ok("pending"), ok("pending"), ok("approved", decided_by="U0RM1")])
    clock = FakeTime()
    seen: list[str] = []
    with api.client() as client:
        final = wait_for_decision(
            client,
            7,
            timeout=3600,
            interval=10,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            on_update=lambda g: seen.append(g["status"]),
        )
    assert final["status"] == "approved"
    assert clock.sleeps == [10, 10]
    assert api.gets() == 3
    assert seen == ["pending", "approved"]  # only changes are reported
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.requests)


def test_waiting_stops_at_the_timeout_with_the_last_status() -> None:
    api = FakeGatesApi([ok("pending")])
    clock = FakeTime()
    with api.client() as client:
        final = wait_for_decision(
            client, 7, timeout=25, interval=10, sleep=clock.sleep, monotonic=clock.monotonic
        )
    assert final["status"] == "pending"
    assert clock.sleeps == [10, 10, 5]  # never past the deadline
    assert api.gets() == 4


def test_waiting_rides_out_a_restarting_bot(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeGatesApi(
        [refused, httpx.Response(502, text="bad gateway"), ok("rejected", reason="no")]
    )
    clock = FakeTime()
    with api.client() as client:
        final = wait_for_decision(
            client, 7, timeout=3600, interval=30, sleep=clock.sleep, monotonic=clock.monotonic
        )
    assert final["status"] == "rejected"
    assert clock.sleeps == [30, 30]
    err = capsys.readouterr().err
    assert "Connection refused" in err and "the bot answered 502" in err


def test_waiting_gives_up_at_once_on_a_refusal_and_when_nothing_ever_answers() -> None:
    api = FakeGatesApi([httpx.Response(404, json={"error": "gate 7 not found"})])
    clock = FakeTime()
    with api.client() as client, pytest.raises(GateApiError, match="404: gate 7 not found"):
        wait_for_decision(
            client, 7, timeout=60, interval=10, sleep=clock.sleep, monotonic=clock.monotonic
        )
    assert clock.sleeps == []

    api = FakeGatesApi([refused])
    with api.client() as client, pytest.raises(GateApiError, match="Connection refused"):
        wait_for_decision(
            client, 7, timeout=20, interval=10, sleep=clock.sleep, monotonic=clock.monotonic
        )


# --- run_gate: exit codes --------------------------------------------------------------------


def test_approved_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeGatesApi([ok("pending"), ok("approved", decided_by="U0RM1", reason="1 of 1")])
    clock = FakeTime()
    assert run(api, "--wait", "--interval", "15s", clock=clock) == 0
    assert clock.sleeps == [15]
    out = capsys.readouterr().out
    assert "gate #7 opened for payments-batch production v2.3.0" in out
    assert "gate #7: approved by U0RM1: 1 of 1" in out
    [post] = [r for r in api.requests if r.method == "POST"]
    assert json.loads(post.content) == {
        "service": "payments-batch",
        "environment": "production",
        "version": "v2.3.0",
    }


@pytest.mark.parametrize(
    ("status", "extra", "said"),
    [
        ("rejected", {"decided_by": "U0RM2", "reason": "not this week"}, "rejected by U0RM2"),
        ("expired", {"decided_by": "releasebot", "reason": "nobody decided in time"}, "expired"),
        ("superseded", {"reason": "superseded by 9e60244"}, "superseded"),
    ],
)
def test_not_approved_exits_1_saying_which(
    capsys: pytest.CaptureFixture[str], status: str, extra: dict[str, Any], said: str
) -> None:
    assert run(FakeGatesApi([ok(status, **extra)]), "--wait") == 1
    err = capsys.readouterr().err
    assert f"not approved: gate #7 was {said}" in err
    if extra.get("reason"):
        assert extra["reason"] in err


def test_a_timeout_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeTime()
    assert run(FakeGatesApi([ok("pending")]), "--wait", "--timeout", "1m", clock=clock) == 1
    assert sum(clock.sleeps) == 60
    assert "timed out after 1m: gate #7 is still pending (0 of 1 approvals" in (
        capsys.readouterr().err
    )


def test_without_wait_asking_is_enough(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeGatesApi([ok("pending")], created=httpx.Response(200, json=gate("pending")))
    assert run(api, "--sha", "a" * 40, "--url", "https://ci.example/1") == 0
    assert api.gets() == 0
    assert "gate #7 found for" in capsys.readouterr().out
    body = json.loads(api.requests[0].content)
    assert (body["sha"], body["url"]) == ("a" * 40, "https://ci.example/1")


def test_an_environment_without_a_gate_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    ungated = gate("approved", id=None, reason="production of storefront has no gate configured")
    api = FakeGatesApi([ok("pending")], created=httpx.Response(200, json=ungated))
    assert run(api, "--wait") == 0
    assert api.gets() == 0
    assert "no gate configured" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("created", "error"),
    [
        (httpx.Response(401, json={"error": "invalid API token"}), "401: invalid API token"),
        (
            httpx.Response(400, json={"error": "unknown service 'x'; configured: checkout"}),
            "400: unknown service 'x'; configured: checkout",
        ),
        (httpx.Response(500, text="boom"), "500: boom"),
    ],
)
def test_an_error_from_the_bot_exits_2(
    capsys: pytest.CaptureFixture[str], created: httpx.Response, error: str
) -> None:
    assert run(FakeGatesApi([ok("pending")], created=created), "--wait") == 2
    assert f"error: the bot answered {error}" in capsys.readouterr().err


def test_a_bot_that_is_not_running_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [*REQUEST, "--version", "v1", "--api-url", f"http://127.0.0.1:{port}", "--token", "t"]
    assert main(argv) == 2
    assert "error: cannot reach the bot at http://127.0.0.1:" in capsys.readouterr().err


def test_no_token_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REQUEST, "--version", "v1"]) == 2
    assert "set RELEASEBOT_API_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--timeout", "soon"], ["--interval", "0s"]])
def test_bad_durations_are_usage_errors(option: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*REQUEST, "--version", "v1", *option])
    assert exited.value.code == 2


# --- against the real app --------------------------------------------------------------------


class PortalTransport(httpx.BaseTransport):
    """A sync transport into an ASGI app whose event loop runs in a blocking portal."""

    def __init__(self, app: Any, portal: anyio.from_thread.BlockingPortal) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self.portal.call(call)


@asynccontextmanager
async def lifespan_of(app: Starlette) -> AsyncIterator[Any]:
    async with LifespanManager(app) as manager:  # built inside the portal's event loop
        yield manager.app


@contextmanager
def real_app(app: Starlette) -> Iterator[tuple[httpx.Client, anyio.from_thread.BlockingPortal]]:
    """The app with its lifespan running, and a sync client of it (as the CLI builds one)."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(lifespan_of(app)) as running,
        httpx.Client(
            transport=PortalTransport(running, portal), base_url="http://bot", headers=AUTH
        ) as client,
    ):
        yield client, portal


def slack_click(client: httpx.Client, user: str, gate_id: int) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0RELBOT",
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "channel": {"id": "#deploys"},
        "container": {"type": "message", "channel_id": "#deploys"},
        "actions": [
            {
                "type": "button",
                "action_id": "release_approve",
                "block_id": "b",
                "value": str(gate_id),
                "action_ts": str(time.time()),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = slack_headers(body, content_type="application/x-www-form-urlencoded")
    answer = client.post("/slack/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_the_cli_waits_for_a_release_manager_on_the_real_app(
    environ: dict[str, str],
    clock: FrozenClock,
    slack: FakeSlackWebApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings({**environ, "RELEASEBOT_API_TOKEN": TOKEN})
    # A release named by its version only has no commits: nobody knows who touched it, so
    # its gate lets approvals through only with `unknown_people: allow` (recorded as blind).
    data = example_config_data()
    data["services"]["payments-batch"]["environments"][-1]["gate"]["unknown_people"] = "allow"
    overrides = Overrides(
        clock=clock,
        config=parse_config(data),
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        environ={},
    )
    app = create_app(settings, overrides=overrides)
    fake_time = FakeTime()
    with real_app(app) as (client, portal):
        runtime = app.state.runtime

        def meanwhile(seconds: float) -> None:
            """Between polls: the risk is assessed, then a release manager approves."""
            fake_time.sleep(seconds)
            portal.call(runtime.worker.drain)
            if len(fake_time.sleeps) == 2:
                with runtime.db.read() as session:
                    gate_id = session.exec(select(Gate)).one().id
                assert gate_id is not None
                slack_click(client, "U0RM1", gate_id)
                portal.call(runtime.worker.drain)

        args = build_parser().parse_args(
            [*REQUEST, "--version", "v2.3.0", "--wait", "--requested-by", "alice"]
        )
        code = run_gate(args, client, sleep=meanwhile, monotonic=fake_time.monotonic)

        assert code == 0, capsys.readouterr()
        assert fake_time.sleeps == [10, 10]
        out = capsys.readouterr().out
        assert "opened for payments-batch production v2.3.0" in out
        assert "gate #1: pending (0 of 1 approvals" in out
        assert "gate #1: approved by U0RM1" in out

        again = build_parser().parse_args([*REQUEST, "--version", "v2.3.0", "--wait"])
        assert run_gate(again, client, sleep=meanwhile, monotonic=fake_time.monotonic) == 0
        assert "gate #1 found for" in capsys.readouterr().out
    assert slack.messages("#deploys")
