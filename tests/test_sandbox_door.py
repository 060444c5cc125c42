"""The sandbox is not a back door: in it anyone can act as anyone, approvals included.

With RELEASEBOT_DASHBOARD_TOKEN set, the page and every sandbox action ask for the token the
way the dashboard does; without one, only loopback clients get in, unless
RELEASEBOT_SANDBOX_PUBLIC=1. A client on another machine is played by the ASGI transport's
client address (203.0.113.5, a documentation address).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bot.app import Overrides, create_app
from bot.cli.demo import serve
from bot.cli.serve import warn_if_sandbox_reachable
from bot.settings import load_settings
from bot.store.tables import AuditEvent
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import EXAMPLE_CONFIG

DASHBOARD_TOKEN = "dashboard-token-for-door-tests"
REMOTE = ("203.0.113.5", 1234)
LOOPBACK = ("127.0.0.1", 1234)
CLICK = {
    "as": "U0RELMGR1",
    "channel": "#deploys",
    "ts": "1.0",
    "action_id": "release_approve",
    "value": "1",
    "block_id": "b",
}


@pytest.fixture
def sandbox_env(database_url: str) -> dict[str, str]:
    """No SLACK_BOT_TOKEN: Slack is the sandbox."""
    return {
        "RELEASEBOT_DATABASE_URL": database_url,
        "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
        "RELEASEBOT_PUBLIC_URL": "http://bot",
    }


class Sandboxed:
    """The app with the sandbox on, reached over ASGI from the client addresses a test picks."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.runtime = getattr(app, "state", None)

    def client(self, address: tuple[str, int]) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=address)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://bot")


@asynccontextmanager
async def sandboxed(env: dict[str, str], clock: FrozenClock) -> AsyncIterator[Sandboxed]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=FakeEdge().transport,
        environ={},
    )
    app = create_app(load_settings(env), overrides=overrides)
    async with LifespanManager(app) as manager:
        yield Sandboxed(manager.app)


def audit_count(env: dict[str, str]) -> int:
    from sqlmodel import Session, func, select

    from bot.store.db import make_engine

    engine = make_engine(env["RELEASEBOT_DATABASE_URL"])
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(AuditEvent)).one())
    finally:
        engine.dispose()


# --- with a dashboard token ------------------------------------------------------------------


async def test_with_a_dashboard_token_the_sandbox_asks_for_it(
    sandbox_env: dict[str, str], clock: FrozenClock
) -> None:
    env = {**sandbox_env, "RELEASEBOT_DASHBOARD_TOKEN": DASHBOARD_TOKEN}
    async with sandboxed(env, clock) as box:
        for address in (LOOPBACK, REMOTE):
            async with box.client(address) as http:
                page = await http.get("/sandbox")
                assert page.status_code == 401
                assert page.headers["www-authenticate"].startswith("Bearer")
                for path, form in [
                    ("/sandbox/act", CLICK),
                    ("/sandbox/submit", {"as": "U0RELMGR1", "view_id": "V1"}),
                    ("/sandbox/command", {"as": "U0RELMGR1", "text": "freeze all 1h x"}),
                ]:
                    refused = await http.post(path, data=form)
                    assert refused.status_code == 401, path
                # The sandbox's Web API: the well-known sandbox token is no key either.
                api = await http.post(
                    "/sandbox/api/chat.postMessage",
                    data={"channel": "#deploys", "text": "spoofed"},
                    headers={"authorization": "Bearer xoxb-sandbox"},
                )
                assert api.status_code == 401
                wrong = await http.get("/sandbox", headers={"authorization": "Bearer nope"})
                assert wrong.status_code == 401
        assert audit_count(env) == 0

        async with box.client(REMOTE) as http:
            bearer = {"authorization": f"Bearer {DASHBOARD_TOKEN}"}
            assert (await http.get("/sandbox", headers=bearer)).status_code == 200
            history = await http.post(
                "/sandbox/api/conversations.history",
                data={"channel": "#deploys"},
                headers=bearer,
            )
            assert history.status_code == 200
            # A browser signs in once with ?token= and then carries the dashboard's cookie.
            signed_in = await http.get(f"/sandbox?as=U0RELMGR1&token={DASHBOARD_TOKEN}")
            assert signed_in.status_code == 303
            assert signed_in.headers["location"] == "/sandbox?as=U0RELMGR1"
            assert (await http.get("/sandbox?as=U0RELMGR1")).status_code == 200


async def test_a_response_url_the_sandbox_did_not_hand_out_is_not_found(
    sandbox_env: dict[str, str], clock: FrozenClock
) -> None:
    async with sandboxed({**sandbox_env, "RELEASEBOT_SANDBOX_PUBLIC": "1"}, clock) as box:
        async with box.client(REMOTE) as http:
            spoofed = await http.post(
                "/sandbox/respond/0123456789abcdef?channel=%23deploys&user=U0RELMGR1",
                json={"text": "Your approval was recorded"},
            )
            assert spoofed.status_code == 404
            page = await http.get("/sandbox?as=U0RELMGR1&channel=%23deploys")
            assert "Your approval was recorded" not in page.text


# --- without a token -------------------------------------------------------------------------


async def test_without_a_token_only_loopback_clients_get_in(
    sandbox_env: dict[str, str], clock: FrozenClock
) -> None:
    async with sandboxed(sandbox_env, clock) as box:
        async with box.client(REMOTE) as http:
            page = await http.get("/sandbox")
            assert page.status_code == 403
            assert "answers only on this machine" in page.text
            assert "RELEASEBOT_SANDBOX_PUBLIC=1" in page.text
            for path in ("/sandbox/act", "/sandbox/submit", "/sandbox/command"):
                assert (await http.post(path, data=CLICK)).status_code == 403, path
            api = await http.post(
                "/sandbox/api/conversations.history",
                data={"channel": "#deploys"},
                headers={"authorization": "Bearer xoxb-sandbox"},
            )
            assert api.status_code == 403
            # The rest of the app is not the sandbox: the dashboard and health answer as ever.
            assert (await http.get("/healthz")).status_code == 200
        async with box.client(LOOPBACK) as http:
            assert (await http.get("/sandbox")).status_code == 200
            assert (await http.post("/sandbox/act", data=CLICK)).status_code == 303
        async with box.client(("::1", 1234)) as http:
            assert (await http.get("/sandbox")).status_code == 200


async def test_sandbox_public_opens_it_to_other_machines(
    sandbox_env: dict[str, str], clock: FrozenClock
) -> None:
    async with sandboxed({**sandbox_env, "RELEASEBOT_SANDBOX_PUBLIC": "1"}, clock) as box:
        async with box.client(REMOTE) as http:
            assert (await http.get("/sandbox")).status_code == 200
            assert (await http.post("/sandbox/act", data=CLICK)).status_code == 303


# --- the bot's own calls, over a real server -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(sandbox_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The app on loopback with a dashboard token: Bolt's answers travel over HTTP."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        {
            **sandbox_env,
            "RELEASEBOT_PUBLIC_URL": base,
            "RELEASEBOT_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
        }
    )
    server = serve(create_app(settings), "127.0.0.1", port)
    try:
        yield base
    finally:
        server.should_exit = True


def test_behind_the_token_the_bots_own_answers_still_arrive(served: str) -> None:
    """A click's ephemeral answer (Bolt, over /sandbox/api) and a command's answer (the
    response_url) reach the page although neither call carries the dashboard token."""
    bearer = {"authorization": f"Bearer {DASHBOARD_TOKEN}"}
    clicked = httpx.post(f"{served}/sandbox/act", data={**CLICK, "value": "424242"}, headers=bearer)
    assert clicked.status_code == 303
    typed = httpx.post(
        f"{served}/sandbox/command",
        data={"as": "U0RELMGR1", "channel": "#deploys", "text": "help"},
        headers=bearer,
    )
    assert typed.status_code == 303
    page = httpx.get(
        f"{served}/sandbox", params={"as": "U0RELMGR1", "channel": "#deploys"}, headers=bearer
    ).text
    assert page.count("Only visible to you") == 2, page


# --- start-up --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "env", "warned"),
    [
        ("127.0.0.1", {}, None),
        ("::1", {}, None),
        ("0.0.0.0", {}, "the sandbox answers only loopback clients"),
        ("0.0.0.0", {"RELEASEBOT_SANDBOX_PUBLIC": "1"}, "opens it to anyone"),
        ("10.1.2.3", {"RELEASEBOT_DASHBOARD_TOKEN": "t"}, "asks for RELEASEBOT_DASHBOARD_TOKEN"),
        ("0.0.0.0", {"SLACK_BOT_TOKEN": "xoxb-real", "SLACK_SIGNING_SECRET": "s"}, None),
    ],
    ids=["loopback", "ipv6-loopback", "all", "public", "token", "real-slack"],
)
def test_start_up_warns_when_the_sandbox_is_reachable_from_elsewhere(
    sandbox_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    host: str,
    env: dict[str, str],
    warned: str | None,
) -> None:
    settings = load_settings({**sandbox_env, **env})
    with caplog.at_level(logging.WARNING, logger="releasebot"):
        warn_if_sandbox_reachable(settings, host)
    lines = [r.getMessage() for r in caplog.records if r.name == "releasebot"]
    if warned is None:
        assert lines == []
    else:
        [line] = lines
        assert warned in line
        assert host in line
