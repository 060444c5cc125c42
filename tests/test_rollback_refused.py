"""A rollback the pipeline refuses is shown as failed, not as rolling back forever.

Argo CD refuses to roll back an application with auto-sync on (400). The deployment moves
from rolling_back to rollback_failed: the release message says so with Argo CD's reason,
says the bad version still runs and promotion stays locked, and offers Roll back again;
App Home and the dashboard show it, the audit trail records the move, and DORA counts it
as a failure. Once auto-sync is off, Roll back works and the deployment ends rolled back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from bot.config import Config, parse_config
from bot.render import Renderer
from bot.services import dora
from bot.services.production import Production
from bot.store.tables import AuditEvent, Deployment, EnvironmentLock
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_deployers import DeployEdge
from tests.fakes import FrozenClock
from tests.helpers import (
    GENERIC_SECRET,
    SHA_A,
    SHA_B,
    encode,
    example_config_data,
    generic_body,
    rows,
    signed_headers,
)
from tests.slackflow import buttons, click, gated_overrides, submit_reason
from tests.test_app_home import open_home
from tests.test_deployers_from_clicks import (
    HOOK_SECRETS,
    deployers_env,
    deployment,
    release_message,
    report,
    thread_lines,
)
from tests.test_render import EXAMPLE_TEMPLATES, VIEW
from tests.test_slash_commands import Slash

APP = "storefront-prod"


def storefront_config() -> Config:
    """The example config; storefront (synced by Argo CD) is owned by U0RM1 and may also be
    reported through POST /webhooks/generic."""
    data = example_config_data()
    storefront = data["services"]["storefront"]
    storefront["owners"] = ["U0RM1"]
    [production] = storefront["environments"]
    production["track"]["generic"] = True
    production.pop("verify")  # verification is not what this is about
    return parse_config(data)


@pytest.fixture
def edge() -> DeployEdge:
    fake = DeployEdge()
    fake.argocd.add_app(APP, SHA_B, SHA_A, SHA_B)
    fake.argocd.automated.add(APP)  # auto-sync on: Argo CD refuses a rollback
    return fake


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: DeployEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    overrides = replace(
        gated_overrides(clock, edge, config=storefront_config()), environ=HOOK_SECRETS
    )
    async with bot_factory(env=deployers_env(app_private_key), overrides=overrides) as running:
        yield running


async def roll_back_by_click(bot: Bot, slack: FakeSlackWebApi, reason: str) -> Deployment:
    """U0RM1 clicks Roll back on the production message and gives a reason."""
    bad = deployment(bot, "storefront", "production")
    assert "release_rollback" in buttons(release_message(bot, slack, bad))
    await click(bot, "U0RM1", "release_rollback", bad.id or 0)
    await submit_reason(bot, slack, "U0RM1", reason)
    return deployment(bot, "storefront", "production")


def section_texts(message: dict[str, Any]) -> str:
    return "\n".join(
        str(block["text"]["text"])
        for block in message["blocks"]
        if block["type"] == "section" and "text" in block
    )


def state_fields(message: dict[str, Any]) -> str:
    [fields] = [b["fields"] for b in message["blocks"] if b.get("fields")]
    return str(fields[0]["text"])


def state_changes(bot: Bot, deployment_id: int | None) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        found = session.exec(
            select(AuditEvent)
            .where(AuditEvent.subject == f"deployment:{deployment_id}")
            .where(AuditEvent.action == "deployment.state_changed")
            .order_by(AuditEvent.seq)  # type: ignore[arg-type]
        ).all()
    return [dict(json.loads(event.details), actor=event.actor) for event in found]


async def test_a_refused_rollback_is_shown_as_failed_and_can_be_tried_again(
    bot: Bot,
    slack: FakeSlackWebApi,
    edge: DeployEdge,
    clock: FrozenClock,
    slack_server: tuple[FakeSlackWebApi, str],
) -> None:
    await report(bot, "storefront", "production", SHA_A, "v3.0.0")
    clock.advance(hours=1)
    await report(bot, "storefront", "production", SHA_B, "v3.1.0")
    bad = await roll_back_by_click(bot, slack, "checkout page is blank")

    # Argo CD answered 400 once; the deployer gave up and the deployment left rolling_back.
    assert len(edge.argocd.calls("POST", "/rollback")) == 1
    assert (bad.state, bad.rollback_to) == ("rollback_failed", SHA_A)
    message = release_message(bot, slack, bad)
    assert state_fields(message) == "*State*\n:warning: Rollback failed"
    assert "Rolling back" not in json.dumps([message["text"], message["blocks"]])
    shown = section_texts(message)
    assert ":warning: *Rollback to `f95f852` failed*: " in shown
    assert "rollback cannot be initiated when auto-sync is enabled" in shown
    assert (
        "*v3.1.0* still runs in production; automatic promotion into production stays "
        "stopped until someone unlocks it. Roll back again once the cause is fixed." in shown
    )
    assert ":lock: *Automatic promotion stopped:* rolled back by U0RM1: checkout page is blank" in (
        shown
    )
    assert buttons(message) == ["release_rollback", "release_unlock"]
    assert message["text"].endswith("(9e60244): :warning: Rollback failed")

    # The lock placed by the rollback stays: the bad version still runs.
    [lock] = rows(bot, EnvironmentLock)
    assert (lock.service, lock.environment, lock.holds) == ("storefront", "production", "automatic")

    # Audited: the move out of rolling_back, by releasebot, with the deployer's reason.
    moves = [(c["from"], c["to"]) for c in state_changes(bot, bad.id)]
    assert moves[-2:] == [("succeeded", "rolling_back"), ("rolling_back", "rollback_failed")]
    failed = state_changes(bot, bad.id)[-1]
    assert failed["actor"] == "releasebot" and failed["source"] == "deployer"
    assert failed["note"].startswith("rollback to f95f852 failed: ")
    assert "auto-sync" in failed["note"]
    thread = "\n".join(thread_lines(bot, slack, bad))
    assert "Could not rollback through argocd" in thread

    # `/release status`, App Home and the dashboard say the same: v3.1.0 still runs.
    status = json.dumps(await Slash(bot, slack, slack_server[1])("U0RM1", "status storefront"))
    assert "Rollback failed *v3.1.0* (`9e60244`)" in status and "running" not in status
    home = json.dumps(await open_home(bot, slack, "U0RM1"))
    assert "*v3.1.0* (`9e60244`) :warning: Rollback failed" in home
    page = (await bot.http.get(f"/deployments/{bad.id}")).text
    assert "Rollback failed" in page and "Rolling back" not in page

    # DORA counts it as a failed production deployment.
    with bot.runtime.db.read() as session:
        figures = dora.metrics(
            session,
            now=clock.now() + timedelta(minutes=1),
            days=7,
            service="storefront",
            production=Production.of(bot.runtime.config),
        )
    assert (figures.deployments, figures.change_failure_rate) == (2, 0.5)

    # Auto-sync turned off in Argo CD: Roll back again works, and ends when SHA_A is back.
    edge.argocd.automated.discard(APP)
    clock.advance(minutes=10)
    again = await roll_back_by_click(bot, slack, "auto-sync is off now")
    assert again.state == "rolling_back"
    assert len(edge.argocd.calls("POST", "/rollback")) == 2
    body = encode(
        generic_body(
            "succeeded",
            service="storefront",
            environment="production",
            sha=SHA_A,
            version="v3.0.0",
            previous_sha=SHA_B,
            url="https://argocd.example/applications/storefront-prod?rollback=2",
        )
    )
    answer = await bot.post("/webhooks/generic", body, signed_headers(body, GENERIC_SECRET))
    assert answer.json()["status"] == "accepted", answer.text
    await bot.send_outbox()
    with bot.runtime.db.read() as session:
        restored = session.get(Deployment, bad.id)
    assert restored is not None and restored.state == "rolled_back"
    assert "Rolled back" in state_fields(release_message(bot, slack, restored))


async def test_argocd_refusing_the_token_fails_the_rollback_and_leaves_the_good_version_alone(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, clock: FrozenClock
) -> None:
    """403 from Argo CD: the rolled-back deployment shows why; the version it was to restore
    keeps its own state."""
    edge.argocd.forbidden.add(APP)
    await report(bot, "storefront", "production", SHA_A, "v3.0.0")
    clock.advance(hours=1)
    await report(bot, "storefront", "production", SHA_B, "v3.1.0")
    bad = await roll_back_by_click(bot, slack, "checkout page is blank")
    assert bad.state == "rollback_failed"
    message = release_message(bot, slack, bad)
    assert "permission denied" in section_texts(message)
    with bot.runtime.db.read() as session:
        good = session.exec(select(Deployment).where(Deployment.sha == SHA_A)).one()
    assert good.state == "succeeded"


def test_the_documented_template_shows_a_refused_rollback_as_the_builder_does() -> None:
    """Operators who copied docs/templates/release_message.json.j2 see the same message."""
    view = replace(
        VIEW,
        state="rollback_failed",
        rollback_to=SHA_A,
        rollback_error="Argo CD answered 400: <!channel> auto-sync & more",
        lock="rolled back by U0RM1: blank",
        can_roll_back=True,
    )
    built = Renderer().release_message(view)
    assert Renderer(template_dir=EXAMPLE_TEMPLATES).release_message(view) == built
    [line] = [
        b["text"]["text"] for b in built[1] if "Rollback to" in b.get("text", {}).get("text", "")
    ]
    assert line == (
        ":warning: *Rollback to `f95f852` failed*: Argo CD answered 400: &lt;!channel&gt; "
        "auto-sync &amp; more\n*v2.3.0* still runs in production; automatic promotion into "
        "production stays stopped until someone unlocks it. Roll back again once the cause "
        "is fixed."
    )
