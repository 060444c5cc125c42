"""A release reported by its version alone is named by that version wherever people read
it, never by its `v:<version>` key nor a 7-character cut of it.

payments-batch reports Helm chart versions without a commit sha through the signed
generic webhook (`{"version": "1.4.10"}`); releasebot keys such a release `v:1.4.10`.
Its release message, the thread lines of a release it supersedes, the direct messages of
an escalated gate, the refusal of a Re-request (whose `/release promote` hint must work
when typed), `/release status` and `history`, App Home, the dashboard's pages, the
PagerDuty change event and the deploy markers all say `1.4.10`. Versions of two-digit
patches are used on purpose: the first 7 characters of `v:1.4.10` read as another
version, `v:1.4.1`.

Through the real app: signed webhooks, signed Slack clicks and slash commands, a fake
Slack, PagerDuty, Grafana, Datadog, New Relic and deploy webhook at the edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.render import Renderer
from bot.scheduling import gate_sweep
from bot.store.tables import Deployment
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_deployers import DeployEdge
from tests.fakes import FrozenClock
from tests.helpers import GENERIC_SECRET, example_config_data, rows
from tests.slackflow import app_private_key, click, gated_overrides, told
from tests.test_app_home import home_text, open_home
from tests.test_deployers_from_clicks import (
    HOOK_SECRETS,
    approval_line,
    deployers_env,
    deployment,
    gate_of,
    release_message,
    thread_lines,
)
from tests.test_gate_escalation import direct_messages
from tests.test_markers import MARKERS, Observability
from tests.test_markers import SECRETS as MARKER_SECRETS
from tests.test_render import VIEW
from tests.test_slash_commands import Slash, shown
from tests.test_versions_without_sha import SERVICE, chart_config_data, promote, report

__all__ = ["app_private_key"]  # the fixture the bot below is built with

ROUTING_KEY = "pd-payments-routing-key"
KEY = re.compile(r"v:\d")  # a version key as stored, shown whole or cut
EXAMPLE_TEMPLATES = Path(__file__).resolve().parents[1] / "docs" / "templates"


def labels_config() -> Config:
    """payments-batch: staging, then a gated production (approvals blind: no commits), both
    reported through POST /webhooks/generic; its owner is U0OWNER01, its changes go to
    PagerDuty, and production's gate escalates after 1h and expires after 4h."""
    data = chart_config_data()
    payments = data["services"][SERVICE]
    payments["owners"] = ["U0OWNER01"]
    payments["oncall"] = {"pagerduty": {"routing_key_env": "PD_PAYMENTS_ROUTING_KEY"}}
    payments["environments"][1]["gate"].update(expires_after="4h", escalate_after="1h")
    return parse_config(data)


@pytest.fixture
def edge() -> DeployEdge:
    return DeployEdge()


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: DeployEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    environ = {**HOOK_SECRETS, "PD_PAYMENTS_ROUTING_KEY": ROUTING_KEY}
    overrides = replace(gated_overrides(clock, edge, config=labels_config()), environ=environ)
    async with bot_factory(env=deployers_env(app_private_key), overrides=overrides) as running:
        yield running


def no_key(text: str) -> str:
    """`text`, once it is known to show no version key."""
    assert not KEY.search(text), f"a version key is shown: {text!r}"
    return text


def message_text(message: dict[str, Any]) -> str:
    return str(message["text"]) + "\n" + json.dumps(message["blocks"], ensure_ascii=False)


async def test_the_release_message_and_the_change_event_name_the_version(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    await report(bot, "staging", "1.4.10")
    await report(bot, "production", "1.4.10")
    production = deployment(bot, SERVICE, "production")
    assert production.sha == "v:1.4.10"

    message = release_message(bot, slack, production)
    assert message["text"] == "payments-batch → production 1.4.10: :large_green_circle: Deployed"
    fields = [b for b in message["blocks"] if "fields" in b][0]["fields"]
    assert fields[1]["text"] == "*Version*\n`1.4.10`"  # the version once, as no commit
    no_key(message_text(message))

    assert [c["payload"]["summary"] for c in edge.pagerduty.changes] == [
        "Deployed payments-batch 1.4.10 to production"
    ]
    assert edge.pagerduty.changes[0]["routing_key"] == ROUTING_KEY


async def test_superseded_escalated_and_re_requested_releases_are_named_by_version(
    bot: Bot,
    slack: FakeSlackWebApi,
    slack_server: tuple[FakeSlackWebApi, str],
    clock: FrozenClock,
) -> None:
    # 1.4.10 waits at production's gate past its escalation, then expires.
    await report(bot, "staging", "1.4.10")
    waiting = await promote(bot, slack, "1.4.10")
    expired_gate = gate_of(bot, waiting.id).id or 0
    clock.advance(hours=1, minutes=1)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()
    dms = direct_messages(slack)
    assert dms, "the escalation asked the approvers directly"
    for text in dms.values():
        assert "payments-batch 1.4.10 → production has waited" in no_key(text)
    clock.advance(hours=3)
    await gate_sweep(bot.runtime)
    await bot.send_outbox()
    assert gate_of(bot, waiting.id).status == "expired"

    # 1.4.11 waits there next, and 1.4.12 supersedes it.
    await report(bot, "staging", "1.4.11")
    older = await promote(bot, slack, "1.4.11")
    clock.advance(minutes=10)
    await report(bot, "staging", "1.4.12")
    await promote(bot, slack, "1.4.12")
    superseded = next(d for d in rows(bot, Deployment) if d.id == older.id)
    assert superseded.state == "superseded"
    lines = thread_lines(bot, slack, superseded)
    assert any("superseded by 1.4.12" in line for line in lines)
    for line in lines:
        no_key(line)
    message = release_message(bot, slack, superseded)
    assert "payments-batch → production 1.4.11: :fast_forward: Superseded" in message["text"]
    assert approval_line(message) == "*Approval*\nsuperseded: superseded by 1.4.12"
    no_key(message_text(message))

    # Asking for 1.4.10's expired gate again is refused over 1.4.12, with a hint that works.
    await click(bot, "U0RM1", "release_rerequest", expired_gate)
    refused = no_key(told(slack, "U0RM1"))
    assert "superseded by 1.4.12" in refused
    hint = "/release promote payments-batch 1.4.10 to production"
    assert f"to send 1.4.10 to production anyway, `{hint}`" in refused
    slash = Slash(bot, slack, slack_server[1])
    answer = shown(await slash("U0RM1", hint.removeprefix("/release ")))
    assert "promoting 1.4.10 to production" in no_key(answer)


async def test_status_history_app_home_and_the_dashboard_name_the_version(
    bot: Bot, slack: FakeSlackWebApi, slack_server: tuple[FakeSlackWebApi, str]
) -> None:
    await report(bot, "staging", "1.4.10")
    await report(bot, "production", "1.4.10")
    production = deployment(bot, SERVICE, "production")
    slash = Slash(bot, slack, slack_server[1])

    status = no_key(shown(await slash("U0SRE1", "status payments-batch")))
    assert "*1.4.10*" in status and "1.4.10 (" not in status
    history = no_key(shown(await slash("U0SRE1", "history payments-batch production")))
    assert "*1.4.10*" in history and "`1.4.10`" not in history

    home = no_key(home_text(await open_home(bot, slack, "U0OWNER01")))
    assert "*payments-batch* `production` *1.4.10* " in home

    # The pages as people read them; the audit records they quote stay verbatim.
    pages = {
        "/": None,
        f"/deployments/{production.id}": "<h2>Timeline</h2>",
        f"/deployments/{production.id}/evidence.html": "<h2>Audit chain</h2>",
    }
    for path, records in pages.items():
        answer = await bot.http.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        read = answer.text.split(records)[0] if records else answer.text
        assert "1.4.10" in no_key(read), path
    page = (await bot.http.get(f"/deployments/{production.id}")).text
    assert "none reported: released by its version, 1.4.10" in page


def test_the_documented_template_names_a_version_only_release_as_the_builder_does() -> None:
    """Operators who copied docs/templates/release_message.json.j2 see the version too, in
    a refused rollback to a release that was reported by its version alone."""
    view = replace(
        VIEW,
        sha="v:1.4.11",
        version="1.4.11",
        state="rollback_failed",
        rollback_to="v:1.4.10",
        rollback_error="the pipeline answered 409",
        can_roll_back=True,
    )
    built = Renderer().release_message(view)
    assert Renderer(template_dir=EXAMPLE_TEMPLATES).release_message(view) == built
    text = no_key(built[0] + json.dumps(built[1], ensure_ascii=False))
    assert ":warning: *Rollback to `1.4.10` failed*: the pipeline answered 409" in text
    assert "*Version*\\n`1.4.11`" in text


async def test_deploy_markers_name_the_version(
    bot_factory: BotFactory, clock: FrozenClock, app_private_key: str
) -> None:
    """Grafana, Datadog and New Relic hear of 1.4.10 as the version deployed."""
    world = Observability()
    data = example_config_data()
    data["services"][SERVICE]["markers"] = MARKERS
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=world.transport,
        config=parse_config(data),
        environ=MARKER_SECRETS,
    )
    env = {
        "GITHUB_APP_ID": "1234",
        "GITHUB_APP_PRIVATE_KEY": app_private_key,
        "RELEASEBOT_GENERIC_WEBHOOK_SECRET": GENERIC_SECRET,
    }
    async with bot_factory(env=env, overrides=overrides) as bot:
        await report(bot, "production", "1.4.10")
        clock.advance(minutes=5)
        await bot.send_outbox()
    [annotation] = world.grafana.annotations.values()
    assert "version:1.4.10" in annotation["tags"]
    assert "Deploy: payments-batch 1.4.10 to production" in annotation["text"]
    [event] = world.datadog.events
    assert "version:1.4.10" in event["tags"]
    [mutation] = world.newrelic.mutations
    assert 'version: "1.4.10"' in mutation
    no_key(json.dumps([annotation, event, mutation], ensure_ascii=False))
