"""Every Slack surface built by `bot.blocks`, from realistic and hostile view data, checked
against slack_sdk's Block Kit models and for mrkdwn escaping."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks import commands, home, modals
from bot.blocks import dora as dora_blocks
from bot.blocks.mrkdwn import STATE_LABELS, escape_mrkdwn, with_mentions
from bot.blocks.release import release_blocks
from bot.domain.dora import DoraMetrics
from bot.services.freezes import ActiveFreeze, FreezeOutcome
from bot.services.gates import Outcome
from bot.services.queries import DeploymentRow, HistoryPage, PendingApproval, StatusRow
from bot.services.release_views import ReleaseView

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
EVIL = "<!channel> <http://evil.example|click> & <@U0ADMIN>"
ESCAPED = "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; &lt;@U0ADMIN&gt;"
RAW = ("<!channel>", "<http://evil", "<@U0ADMIN>")

ROW = DeploymentRow(
    deployment_id=7,
    service="checkout",
    environment="production",
    sha="f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
    version="v2.3.0",
    state="in_progress",
    deployer=EVIL,
    created_at=NOW,
    updated_at=NOW,
    ci_url="https://ci.example/run/1",
    risk_level="high",
    channel="C0RELEASES",
    ts="1700000000.000100",
)
EVIL_ROW = replace(ROW, service=EVIL, environment=EVIL, version=EVIL)
GATE = PendingApproval(
    gate_id=3,
    deployment=ROW,
    progress=f"1 of 2 approvals: {EVIL}",
    requirement=None,
    opened_at=NOW,
    expires_at=NOW + timedelta(hours=4),
    can_act=True,
)
VIEW = ReleaseView(
    deployment_id=7,
    service="checkout",
    environment="production",
    sha=ROW.sha,
    version="v2.3.0",
    ref=EVIL,
    state="awaiting_approval",
    attempt=2,
    deployer=EVIL,
    ci_url="https://ci.example/run/1",
    description=None,
    created_at=NOW,
    updated_at=NOW,
    commits=[
        {"sha": f"{i:040x}", "message": f"{EVIL}\nbody", "author": EVIL, "url": None}
        for i in range(12)
    ],
    risk={"level": "high", "score": 71, "factors": [{"reason": EVIL}]},
    channel=None,
    ts=None,
    diff={"total_commits": 12, "additions": 3, "deletions": 4, "files": 2, "url": None},
    freeze=EVIL,
    gate_id=3,
    gate_status="pending",
    gate_progress="1 of 2 approvals: waiting for U0RM1 & <b>",
    gate_expires_at=NOW + timedelta(hours=4),
    gate_break_glass={"requested_by": "U0ONCALL", "reason": EVIL},
    verification={"total": 3, "passed": 1, "failed": [EVIL], "pending": 1, "cancelled": 1},
    promote_to="production",
    can_roll_back=True,
    lock=EVIL,
)


def assert_valid(blocks: list[dict[str, Any]], *, limit: int = 50) -> None:
    assert 0 < len(blocks) <= limit
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()


def assert_escaped(blocks: list[dict[str, Any]] | dict[str, Any]) -> str:
    """Every text shown (button values are data, never shown) is free of raw mrkdwn."""
    shown = "\n".join(_texts(blocks))
    for raw in RAW:
        assert raw not in shown
    return json.dumps(blocks, ensure_ascii=False)


def _texts(node: object) -> list[str]:
    if isinstance(node, list):
        return [text for item in node for text in _texts(item)]
    if not isinstance(node, dict):
        return []
    own = [node["text"]] if isinstance(node.get("text"), str) else []
    return own + [text for key, value in node.items() if key != "value" for text in _texts(value)]


def test_the_release_message_in_every_state_is_valid_and_escaped() -> None:
    for state in STATE_LABELS:
        blocks = release_blocks(replace(VIEW, state=state), details_url="https://rb/d/7")
        assert_valid(blocks)
        flat = assert_escaped(blocks)
        assert ESCAPED in flat
        assert "<https://rb/d/7|details>" in flat
    actions = next(b for b in blocks if b["type"] == "actions")
    ids = [e["action_id"] for e in actions["elements"]]
    assert ids == [
        "release_approve",
        "release_reject",
        "release_break_glass_confirm",
        "release_promote",
        "release_rollback",
        "release_unlock",
    ]


def test_a_fresh_release_message_is_valid() -> None:
    fresh = ReleaseView(**{**VIEW.__dict__, "commits": None, "risk": None, "gate_id": None})
    blocks = release_blocks(
        replace(fresh, gate_status=None, verification=None, lock=None, freeze=None, diff=None),
        details_url="https://rb/d/7",
    )
    assert_valid(blocks)
    flat = assert_escaped(blocks)
    assert "_assessing..._" in flat


def test_help_and_usage_replies() -> None:
    for reply in (
        commands.help_reply("/release"),
        commands.help_reply("/release", "rollback"),
        commands.usage_reply(f"there is no service `{EVIL}`", command_name="/release"),
        commands.usage_reply(
            f"no `{EVIL}`",
            command_name="/release",
            subcommand="status",
            suggestion=EVIL,
            corrected=f"status {EVIL}",
        ),
    ):
        assert_valid(reply.blocks)
        assert_escaped(reply.blocks)
    usage = commands.usage_reply("bad <b>", command_name="/release", subcommand="freeze")
    assert usage.text.startswith(":warning: Bad &lt;b&gt;.\nUsage: `/release freeze <env|all>")


def test_status_history_and_pending_replies() -> None:
    rows = [
        StatusRow("checkout", "staging", None, None),
        StatusRow(EVIL, EVIL, EVIL_ROW, ROW, freeze=EVIL, lock=EVIL),
    ]
    status = commands.status_reply(EVIL, rows, offset=0, shown=2, total=40)
    history = commands.history_reply(
        HistoryPage([ROW, EVIL_ROW] * 30, 0, True),
        service=EVIL,
        environment=None,
        n=60,
        offset=0,
    )
    pending = commands.pending_reply([GATE, replace(GATE, can_act=False)] * 8, offset=0)
    for reply in (status, history, pending):
        assert_valid(reply.blocks)
        assert_escaped(reply.blocks)
        next_page = reply.blocks[-1]
        assert next_page["elements"][0]["action_id"] == commands.PAGE_ACTION
    assert json.loads(status.blocks[-1]["elements"][0]["value"]) == {"t": f"status {EVIL}", "o": 30}
    assert "<https://slack.com/archives/C0RELEASES/p1700000000000100|message>" in json.dumps(
        history.blocks
    )
    assert pending.text == "16 pending approvals, 8 for you"


def test_operation_and_freeze_replies_escape_what_they_repeat() -> None:
    text, said = commands.operation_reply(
        Outcome("promoted", f"promoting {EVIL}"), service=EVIL, user_id="U0DEV", reason=EVIL
    )
    assert text == f":rocket: promoting {ESCAPED}"
    assert said == f":rocket: <@U0DEV> *{ESCAPED}*: promoting {ESCAPED} ({ESCAPED})"
    assert (
        commands.operation_reply(Outcome("refused", "no"), service="a", user_id="U0DEV")[1] is None
    )
    frozen = FreezeOutcome("frozen", "frozen", environment="all", end=NOW, reason=EVIL)
    text, said = commands.freeze_reply(frozen, user_id="U0RM", everywhere=True)
    assert said == (
        ":snowflake: <@U0RM> froze deploys to *every environment* until 2026-11-17 10:00 UTC: "
        + ESCAPED
    )


def test_app_home_is_a_valid_view() -> None:
    freeze = ActiveFreeze((EVIL,), NOW, NOW + timedelta(days=1), EVIL, "slack", "U0RM")
    view = home.home_view(
        now=NOW,
        approvals=[GATE] * 30,
        owned=[EVIL],
        releases=[ROW, EVIL_ROW] * 10,
        in_force=[freeze] * 12,
        command_name="/release",
    )
    assert view["type"] == "home"
    assert_valid(view["blocks"], limit=100)
    assert_escaped(view)
    View(**view).validate_json()
    empty = home.home_view(now=NOW, approvals=[], owned=[], releases=[], in_force=[])
    View(**empty).validate_json()


def test_modals_are_valid_views() -> None:
    for build in (modals.reject_modal, modals.rollback_modal, modals.break_glass_modal):
        view = build({"gate_id": 3, "channel": "C0RELEASES"})
        View(**view).validate_json()
        assert view["blocks"][0]["block_id"] == modals.REASON_BLOCK
        assert json.loads(view["private_metadata"]) == {"gate_id": 3, "channel": "C0RELEASES"}


def test_the_dora_message_is_valid() -> None:
    rows = [
        DoraMetrics(None, 7, 12, 12 / 7, 5.5, 0.25, 1.0, 3, 2),
        DoraMetrics("checkout", 7, 0, 0.0, None, None, None, 0, 0),
    ]
    rows += [replace(rows[1], service=f"service-{i:03}") for i in range(200)]
    reply = dora_blocks.message(rows, now=NOW)
    assert_valid(commands.metrics_reply(reply.text, reply.blocks).blocks)
    assert reply.text.startswith("DORA metrics, last 7 days to 2026-11-17 10:00 UTC")


def test_mentions_are_made_only_of_ids() -> None:
    assert with_mentions("U0RM1 and S0GRPS1 <!here>") == (
        "<@U0RM1> and <!subteam^S0GRPS1> &lt;!here&gt;"
    )
    # capitalised words are not ids: a freeze that ends at 18:00 UTC mentions nobody
    assert with_mentions("SUCCESS until 18:00 UTC, WAIT") == "SUCCESS until 18:00 UTC, WAIT"
    assert escape_mrkdwn(EVIL) == ESCAPED


@pytest.mark.parametrize(
    "module",
    [
        "bot.blocks.release",
        "bot.blocks.commands",
        "bot.blocks.home",
        "bot.blocks.dora",
        "bot.blocks.modals",
    ],
)
def test_the_builder_imports_no_service_store_or_slack_sdk(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in sys.modules if m.startswith(('bot.services', 'bot.store', "
        "'slack_sdk', 'slack_bolt', 'starlette', 'sqlalchemy'))]\n"
        "print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
