"""Release messages as Slack renders them: valid Block Kit, escaped input, operator templates."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.blocks.mrkdwn import STATE_LABELS, escape_mrkdwn, link, mention
from bot.render import Renderer
from bot.services.release_views import ReleaseView

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)

VIEW = ReleaseView(
    deployment_id=7,
    service="checkout",
    environment="production",
    sha="f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
    version="v2.3.0",
    ref="main",
    state="in_progress",
    attempt=1,
    deployer="octocat",
    ci_url="https://github.com/acme/checkout/actions/runs/1",
    description=None,
    created_at=NOW,
    updated_at=NOW,
    commits=None,
    risk=None,
    channel=None,
    ts=None,
)


def assert_valid_blocks(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()  # raises SlackObjectFormationError past Slack's limits
        for text in _texts(block):
            assert len(text) <= 3000


def _texts(block: dict[str, Any]) -> list[str]:
    texts = [block["text"]["text"]] if isinstance(block.get("text"), dict) else []
    texts += [f["text"] for f in block.get("fields", [])]
    texts += [e["text"] for e in block.get("elements", []) if "text" in e]
    return texts


@pytest.mark.parametrize("state", sorted(STATE_LABELS))
def test_every_state_renders_valid_block_kit(state: str) -> None:
    text, blocks = Renderer().release_message(replace(VIEW, state=state))
    assert_valid_blocks(blocks)
    assert STATE_LABELS[state][1] in text


def test_the_message_shows_what_the_contract_lists() -> None:
    text, blocks = Renderer(public_url="https://rb.example").release_message(VIEW)
    flat = json.dumps(blocks, ensure_ascii=False)
    assert blocks[0]["text"]["text"] == "checkout → production · v2.3.0"
    for expected in ("f95f852", "Deploying", "octocat", "open run", "assessing..."):
        assert expected in flat
    assert "<https://rb.example/deployments/7|details>" in flat
    assert text.startswith("checkout → production v2.3.0 (f95f852)")


def test_text_from_ci_and_commits_cannot_ping_or_fake_links() -> None:
    evil = "<!channel> <http://evil.example|click> & <@U0ADMIN>"
    view = replace(
        VIEW,
        deployer=evil,
        ref=evil,
        commits=[{"sha": "a" * 40, "message": evil, "author": evil, "url": None}],
    )
    text, blocks = Renderer().release_message(view)
    flat = json.dumps(blocks, ensure_ascii=False)
    assert "<!channel>" not in flat and "<http://evil" not in flat and "<@U0ADMIN>" not in flat
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; &lt;@U0ADMIN&gt;" in flat
    assert_valid_blocks(blocks)


def test_header_text_is_plain_and_kept_within_slack_limits() -> None:
    view = replace(VIEW, version="v" + "9" * 300)
    _, blocks = Renderer().release_message(view)
    assert len(blocks[0]["text"]["text"]) == 150
    assert_valid_blocks(blocks)


def test_commits_show_the_first_ten_then_a_count() -> None:
    commits = [
        {"sha": f"{i:040x}", "message": f"change {i}\nbody", "author": "dev", "url": None}
        for i in range(14)
    ]
    _, blocks = Renderer().release_message(replace(VIEW, commits=commits))
    section = next(b for b in blocks if b.get("text", {}).get("text", "").startswith("*Commits*"))
    assert section["text"]["text"].count("• ") == 10
    assert "and 4 more" in section["text"]["text"]
    assert "body" not in section["text"]["text"]  # the first line of each message only


def test_thread_lines_escape_notes_and_link_the_run() -> None:
    line = Renderer().thread_reply(
        VIEW,
        {
            "from": "in_progress",
            "to": "failed",
            "at": NOW.isoformat(),
            "actor": "github:octocat",
            "url": "https://ci.example/run/1",
            "note": "<!here> broke",
        },
    )
    assert line.startswith(":red_circle: Deploy failed (was in progress) at 2026-11-17 10:00 UTC")
    assert "&lt;!here&gt; broke" in line
    assert line.endswith("<https://ci.example/run/1|CI run>")


def test_links_and_mentions_escape_their_parts() -> None:
    assert link("https://x.example/a|b>c", "a<b") == "<https://x.example/a%7Cb&gt;c|a&lt;b>"
    assert link("javascript:alert(1)", "run") == "run"
    assert mention("U0OWNER01") == "<@U0OWNER01>"
    assert mention("S0RELMGRS") == "<!subteam^S0RELMGRS>"
    assert mention("<!channel>") == escape_mrkdwn("<!channel>")


def test_operators_can_override_a_template(tmp_path: Path) -> None:
    (tmp_path / "thread_reply.txt.j2").write_text("{{ r.service }} is now {{ change.to }}")
    line = Renderer(template_dir=tmp_path).thread_reply(
        VIEW, {"from": "pending", "to": "in_progress", "at": NOW.isoformat()}
    )
    assert line == "checkout is now in_progress"
    _, blocks = Renderer(template_dir=tmp_path).release_message(VIEW)  # others fall back
    assert_valid_blocks(blocks)


def test_a_broken_override_is_reported_with_the_template_name(tmp_path: Path) -> None:
    (tmp_path / "release_message.json.j2").write_text('[{"type": "divider"},]')
    with pytest.raises(ValueError, match="release_message.json.j2"):
        Renderer(template_dir=tmp_path).release_message(VIEW)


def test_the_approval_line_mentions_the_approvers() -> None:
    view = replace(
        VIEW,
        state="approved",
        gate_id=3,
        gate_status="approved",
        gate_reason="approved by U0RM1 (S0RELMGRS) and U0SRE1 (S0SREGRPS) <!here>",
    )
    _, blocks = Renderer().release_message(view)
    line = next(
        b["text"]["text"] for b in blocks if "*Approval*" in b.get("text", {}).get("text", "")
    )
    assert "<@U0RM1> (<!subteam^S0RELMGRS>)" in line and "<@U0SRE1>" in line
    assert "&lt;!here&gt;" in line  # anything else stays plain text


EXAMPLE_TEMPLATES = Path(__file__).resolve().parents[1] / "docs" / "templates"


@pytest.mark.parametrize("state", sorted(STATE_LABELS))
def test_the_documented_starting_template_renders_what_the_builder_builds(state: str) -> None:
    """docs/templates/release_message.json.j2, the file operators copy into their
    RELEASEBOT_TEMPLATES_DIR to change the release message, starts from the same message."""
    hostile = replace(
        VIEW,
        state=state,
        description="<!channel> & <http://evil|click> `quoted` \\ backslash",
        deployer="<@U123> & co",
    )
    for view in (VIEW, hostile):
        built = Renderer().release_message(view)
        from_example = Renderer(template_dir=EXAMPLE_TEMPLATES).release_message(view)
        assert from_example == built
