"""The local Slack sandbox: Block Kit as safe HTML, and clicks that travel the real path."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.app import create_app
from bot.cli.demo import serve
from bot.settings import load_settings
from integrations.sandbox.blockkit_html import mrkdwn
from tests.helpers import EXAMPLE_CONFIG, example_config_data

API_TOKEN = "sandbox-test-api-token"


def test_mrkdwn_becomes_safe_html() -> None:
    html = mrkdwn(
        "*State*\n:rocket: <https://ci.example/run?a=1&amp;b=2|open run> &lt;script&gt; "
        "<@U0RELMGR1> <!subteam^S0RELMGRS> `code` <javascript:alert(1)|click>",
        {"U0RELMGR1": "Rita", "S0RELMGRS": "release-managers"},
    )
    assert "<strong>State</strong><br>🚀" in html
    assert '<a href="https://ci.example/run?a=1&amp;b=2" rel="noopener"' in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "@Rita" in html and "@release-managers" in html
    assert "<code>code</code>" in html
    assert "javascript:" not in re.sub(r"&lt;javascript:alert\(1\)\|click&gt;", "", html)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def running(tmp_path: Path, database_url: str) -> Iterator[str]:
    """The app served for real on loopback with no Slack token: the sandbox is its Slack.

    payments-batch production's gate approves blind (`unknown_people: allow`): a release a
    CI job names by its version only has no commits, so nobody knows who touched it."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data = example_config_data()
    data["services"]["payments-batch"]["environments"][-1]["gate"]["unknown_people"] = "allow"
    config = tmp_path / "releasebot.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = load_settings(
        {
            "RELEASEBOT_DATABASE_URL": database_url,
            "RELEASEBOT_CONFIG": str(config),
            "RELEASEBOT_PUBLIC_URL": base,
            "RELEASEBOT_API_TOKEN": API_TOKEN,
        }
    )
    server = serve(create_app(settings), "127.0.0.1", port)
    try:
        yield base
    finally:
        server.should_exit = True


def eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def page(base: str, user: str, channel: str = "#deploys") -> str:
    return httpx.get(f"{base}/sandbox", params={"as": user, "channel": channel}).text


def test_a_click_in_the_sandbox_goes_through_bolt_and_decides_the_gate(running: str) -> None:
    base = running
    asked = httpx.post(
        f"{base}/api/v1/gates",
        json={"service": "payments-batch", "environment": "production", "version": "v2.3.0"},
        headers={"authorization": f"Bearer {API_TOKEN}"},
    )
    assert asked.status_code == 201, asked.text
    gate_id = asked.json()["id"]

    # payments-batch has no channel of its own: its release message is in #deploys.
    def with_buttons() -> str | None:
        text = page(base, "U0STRANGR")
        return text if 'data-action="release_approve"' in text else None

    html = eventually(with_buttons, "the Approve button")
    assert "payments-batch → production" in html
    ts = re.search(r'name="ts" value="([^"]+)"', html)
    assert ts is not None
    # Stamped by the app's clock, as Slack stamps messages, and shown as a time of day.
    posted = float(ts.group(1))
    assert abs(posted - time.time()) < 300
    assert f"{datetime.fromtimestamp(posted, UTC):%H:%M:%S} UTC" in html

    def click(user: str) -> None:
        answer = httpx.post(
            f"{base}/sandbox/act",
            data={
                "as": user,
                "channel": "#deploys",
                "ts": ts.group(1),
                "action_id": "release_approve",
                "value": str(gate_id),
                "block_id": "b",
            },
        )
        assert answer.status_code == 303

    click("U0STRANGR")
    assert "you are not in S0RELMGRS" in page(base, "U0STRANGR")
    assert "you are not in" not in page(base, "U0RELMGR1")  # ephemeral: only Stan sees it

    eventually(
        lambda: httpx.get(
            f"{base}/api/v1/gates/{gate_id}", headers={"authorization": f"Bearer {API_TOKEN}"}
        ).json()["progress"],
        "the risk assessment",
    )
    click("U0RELMGR1")
    status = httpx.get(
        f"{base}/api/v1/gates/{gate_id}", headers={"authorization": f"Bearer {API_TOKEN}"}
    ).json()
    assert status["status"] == "approved"
    assert [a["user"] for a in status["approvals"]] == ["U0RELMGR1"]
    eventually(lambda: "approved by" in page(base, "U0RELMGR1"), "the edited message")
    assert "taken blind" in page(base, "U0RELMGR1")  # Rita is told she approved blind


def test_the_sandbox_page_is_gone_when_a_real_slack_is_configured(
    tmp_path: Path, database_url: str
) -> None:
    port = _free_port()
    settings = load_settings(
        {
            "RELEASEBOT_DATABASE_URL": database_url,
            "RELEASEBOT_CONFIG": str(EXAMPLE_CONFIG),
            "SLACK_BOT_TOKEN": "xoxb-real",
            "SLACK_SIGNING_SECRET": "s",
            "RELEASEBOT_SLACK_API_URL": "http://127.0.0.1:9/api/",
        }
    )
    server = serve(create_app(settings), "127.0.0.1", port)
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/sandbox")
        assert answer.status_code == 404
        assert "real Slack workspace" in answer.text
    finally:
        server.should_exit = True
