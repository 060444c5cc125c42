"""Progressive delivery with Argo Rollouts: Argo CD reports a canary, the release message
shows its step with Promote and Abort, and both go through Argo CD's resource actions API
(Promote under the production gate's rules, Abort like a rollback), audited with Argo CD's
answer."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from bot.app import Overrides
from bot.config import parse_config
from bot.store.tables import AuditEvent, Deployment
from integrations.argocd import payloads
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fake_deployers import ARGOCD_TOKEN, ARGOCD_URL, DeployEdge
from tests.fakes import FrozenClock
from tests.helpers import (
    ARGOCD_SECRET,
    REPO_ROOT,
    SHA_A,
    argocd_body,
    argocd_headers,
    encode,
    example_config_data,
)
from tests.slackflow import buttons, click, gated_env, submit_reason, told
from tests.test_webhooks_argocd import SAMPLE, render

APP = "storefront-prod"
ROLLOUT = "storefront-web"
CHANNEL = "#storefront-deploys"
RESOURCES = [
    {"version": "v1", "kind": "Service", "namespace": "storefront", "name": "web",
     "status": "Synced", "health": {"status": "Healthy"}},
    {"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout",
     "namespace": "storefront", "name": ROLLOUT, "status": "Synced",
     "health": {"status": "Suspended", "message": "CanaryPauseStep"}},
]  # fmt: skip


@pytest.fixture
def edge() -> DeployEdge:
    fake = DeployEdge()
    fake.argocd.add_app(APP, SHA_A)
    fake.argocd.add_rollout(APP, ROLLOUT, steps=5, step_index=1, paused=True)
    return fake


@pytest.fixture
async def bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: DeployEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    """The example config, storefront's production gated by release managers."""
    data = example_config_data()
    [production] = data["services"]["storefront"]["environments"]
    production["gate"] = {"approvals": 1, "approvers": ["S0RELMGRS"]}
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=edge.transport,
        environ={},
        config=parse_config(data),
    )
    env = gated_env(
        app_private_key,
        ARGOCD_WEBHOOK_SECRET=ARGOCD_SECRET,
        ARGOCD_URL=ARGOCD_URL,
        ARGOCD_TOKEN=ARGOCD_TOKEN,
    )
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


def canary_notice(health: str = "Suspended") -> dict[str, Any]:
    """The rollout-progress notification as the documented template renders it."""
    body = argocd_body("sync-succeeded")
    body["event"] = "rollout-progress"
    body["health"] = health
    body["resources"] = copy.deepcopy(RESOURCES)
    body["resources"][1]["health"]["status"] = health
    return body


async def notify(bot: Bot, body: dict[str, Any]) -> None:
    answer = await bot.post("/webhooks/argocd", encode(body), argocd_headers())
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted", answer.text
    await bot.send_outbox()


async def paused_canary(bot: Bot) -> int:
    await notify(bot, argocd_body("sync-succeeded"))
    await notify(bot, canary_notice())
    with bot.runtime.db.read() as session:
        found = session.exec(select(Deployment)).one()
    assert found.id is not None
    return found.id


def message(slack: FakeSlackWebApi) -> dict[str, Any]:
    [posted] = slack.messages(CHANNEL)
    return posted


def text_of(posted: dict[str, Any]) -> str:
    return json.dumps(posted["blocks"])


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
        ).all()
    return [{"actor": e.actor, **json.loads(e.details)} for e in events]


def documented_rollout_template() -> str:
    """The body of `template.releasebot-rollout-progress` in the doc's Rollouts section."""
    doc = (REPO_ROOT / "docs" / "argocd-notifications.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", doc, flags=re.S):
        data = yaml.safe_load(block)
        found = data.get("data", {}).get("template.releasebot-rollout-progress")
        if data.get("kind") == "ConfigMap" and found:
            body: str = yaml.safe_load(found)["webhook"]["releasebot"]["body"]
            return body
    raise AssertionError("no rollout-progress template in the doc")


def test_the_documented_template_names_the_rollouts() -> None:
    values = copy.deepcopy(SAMPLE)
    values["app"]["status"]["resources"] = RESOURCES
    values["app"]["status"]["health"]["status"] = "Suspended"
    parsed = payloads.parse(json.loads(render(documented_rollout_template(), values)))
    assert parsed.event is not None
    [rollout] = json.loads(parsed.event.extra["rollouts"])
    assert rollout == {
        "name": ROLLOUT,
        "namespace": "storefront",
        "version": "v1alpha1",
        "health": "Suspended",
        "message": "CanaryPauseStep",
    }
    # A Rollout moving on is another delivery, even within one sync.
    values["app"]["status"]["resources"][1]["health"]["status"] = "Progressing"
    later = payloads.parse(json.loads(render(documented_rollout_template(), values)))
    assert later.delivery != parsed.delivery


async def test_a_paused_canary_shows_its_step_with_promote_promote_fully_and_abort(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    await paused_canary(bot)

    posted = message(slack)
    assert "canary 2/5, paused" in text_of(posted)
    assert ROLLOUT in text_of(posted)
    assert [b for b in buttons(posted) if b.startswith("release_rollout")] == [
        "release_rollout_promote",
        "release_rollout_promote_full",
        "release_rollout_abort",
    ]
    [read] = edge.argocd.calls("GET", f"/api/v1/applications/{APP}/resource")
    assert dict(read.url.params) == {
        "namespace": "storefront",
        "resourceName": ROLLOUT,
        "version": "v1alpha1",
        "kind": "Rollout",
        "group": "argoproj.io",
    }
    [seen] = audited(bot, "rollout.observed")
    assert (seen["step"], seen["steps"], seen["paused"]) == (2, 5, True)


async def test_promote_by_an_approver_resumes_the_rollout(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0RM1", "release_rollout_promote", deployment_id)

    assert "Argo CD is asked to resume" in told(slack, "U0RM1")
    [(action, query)] = edge.argocd.actions_run()
    assert action == "resume"
    assert (query["kind"], query["group"], query["resourceName"]) == (
        "Rollout",
        "argoproj.io",
        ROLLOUT,
    )
    # Argo CD's answer is the receipt, then the Rollout is read again: step 3, moving.
    [done] = audited(bot, "rollout.action_done")
    assert (done["actor"], done["action"], done["receipt"]["status"]) == (
        "U0RM1",
        "resume",
        200,
    )
    assert "canary 3/5, progressing" in text_of(message(slack))
    [asked] = audited(bot, "rollout.action_requested")
    assert asked["actor"] == "U0RM1"


async def test_promote_fully_by_an_approver_skips_the_remaining_steps(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0RM1", "release_rollout_promote_full", deployment_id)

    assert "Argo CD is asked to promote-full" in told(slack, "U0RM1")
    [(action, query)] = edge.argocd.actions_run()
    assert (action, query["resourceName"]) == ("promote-full", ROLLOUT)
    [done] = audited(bot, "rollout.action_done")
    assert (done["actor"], done["action"]) == ("U0RM1", "promote-full")
    posted = message(slack)
    assert "canary 5/5" in text_of(posted)  # the last step: every remaining one skipped
    assert "release_rollout_promote_full" not in buttons(posted)


@pytest.mark.parametrize(
    ("button", "action"),
    [("release_rollout_promote", "resume"), ("release_rollout_promote_full", "promote-full")],
)
async def test_promote_by_the_change_s_author_is_refused(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge, button: str, action: str
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0OWNER01", button, deployment_id)

    refused = told(slack, "U0OWNER01")
    assert "who did not write the change" in refused
    assert edge.argocd.actions_run() == []
    [refusal] = audited(bot, "rollout.action_refused")
    assert (refusal["actor"], refusal["action"]) == ("U0OWNER01", action)
    assert "canary 2/5, paused" in text_of(message(slack))


async def test_promote_by_someone_outside_the_gate_is_refused(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0STRANGER", "release_rollout_promote", deployment_id)

    assert "S0RELMGRS" in told(slack, "U0STRANGER")
    assert edge.argocd.actions_run() == []


async def test_abort_asks_why_then_aborts_the_rollout_audited(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0SRE1", "release_rollout_abort", deployment_id)
    answer = await submit_reason(bot, slack, "U0SRE1", "")
    assert answer["response_action"] == "errors"
    assert edge.argocd.actions_run() == []
    await submit_reason(bot, slack, "U0SRE1", "5xx on the canary pods")

    [(action, _query)] = edge.argocd.actions_run()
    assert action == "abort"
    [asked] = audited(bot, "rollout.action_requested")
    assert (asked["actor"], asked["reason"]) == ("U0SRE1", "5xx on the canary pods")
    [done] = audited(bot, "rollout.action_done")
    assert done["action"] == "abort"
    posted = message(slack)
    assert "canary 2/5, aborted" in text_of(posted)
    assert "release_rollout_promote" not in buttons(posted)


async def test_abort_by_someone_who_may_not_is_refused(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0STRANGER", "release_rollout_abort", deployment_id)
    await submit_reason(bot, slack, "U0STRANGER", "looks wrong")

    assert "may abort the Rollout of storefront" in told(slack, "U0STRANGER")
    assert edge.argocd.actions_run() == []
    [refusal] = audited(bot, "rollout.action_refused")
    assert refusal["action"] == "abort"


async def test_promote_while_slack_s_directory_is_down_is_refused_and_audited(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)
    slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")

    await click(bot, "U0RM1", "release_rollout_promote", deployment_id)

    refused = told(slack, "U0RM1")
    assert "Slack's directory did not answer" in refused
    assert "try again in a minute" in refused
    assert edge.argocd.actions_run() == []
    [refusal] = audited(bot, "rollout.action_refused")
    assert (refusal["actor"], refusal["action"]) == ("U0RM1", "resume")
    assert "Slack's directory did not answer" in refusal["reason"]
    assert audited(bot, "rollout.action_requested") == []


async def test_abort_while_slack_s_directory_is_down_is_refused_and_audited(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)

    await click(bot, "U0SRE1", "release_rollout_abort", deployment_id)
    slack.fail_next("usergroups.users.list", status=503, error="service_unavailable")
    await submit_reason(bot, slack, "U0SRE1", "5xx on the canary pods")

    assert "Slack's directory did not answer" in told(slack, "U0SRE1")
    assert edge.argocd.actions_run() == []
    [refusal] = audited(bot, "rollout.action_refused")
    assert (refusal["actor"], refusal["action"]) == ("U0SRE1", "abort")
    assert audited(bot, "rollout.action_requested") == []


async def test_argo_cd_refusing_the_action_is_shown_and_audited(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    deployment_id = await paused_canary(bot)
    edge.argocd.denied_actions.add("resume")

    await click(bot, "U0RM1", "release_rollout_promote", deployment_id)

    [failed] = audited(bot, "rollout.action_failed")
    assert failed["action"] == "resume"
    assert "permission denied" in failed["reason"]
    assert "may not act on the Rollout storefront-web" in failed["reason"]
    text = text_of(message(slack))
    assert "Argo CD refused" in text
    assert "permission denied" in text
    # Still paused: Promote is offered again.
    assert "canary 2/5, paused" in text
    assert "release_rollout_promote" in buttons(message(slack))
    assert audited(bot, "rollout.action_done") == []


async def test_a_rollout_that_finished_shows_where_it_ended_without_buttons(
    bot: Bot, slack: FakeSlackWebApi, edge: DeployEdge
) -> None:
    await paused_canary(bot)

    await notify(bot, canary_notice("Healthy"))

    posted = message(slack)
    assert "canary, healthy" in text_of(posted)
    assert "release_rollout_promote" not in buttons(posted)
    assert len(edge.argocd.calls("GET", "/resource")) == 1  # nothing left to read


async def test_a_malformed_resources_list_is_a_400(bot: Bot) -> None:
    body = canary_notice()
    body["resources"] = {"kind": "Rollout"}
    answer = await bot.post("/webhooks/argocd", encode(body), argocd_headers())
    assert answer.status_code == 400
    assert "resources" in answer.text


async def test_promote_is_refused_where_the_gate_needs_more_than_one_approval(
    bot_factory: BotFactory,
    clock: FrozenClock,
    edge: DeployEdge,
    app_private_key: str,
    slack: FakeSlackWebApi,
) -> None:
    data = example_config_data()
    [production] = data["services"]["storefront"]["environments"]
    production["gate"] = {"approvals": 2, "approvers": ["S0RELMGRS"]}
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=edge.transport,
        environ={},
        config=parse_config(data),
    )
    env = gated_env(
        app_private_key,
        ARGOCD_WEBHOOK_SECRET=ARGOCD_SECRET,
        ARGOCD_URL=ARGOCD_URL,
        ARGOCD_TOKEN=ARGOCD_TOKEN,
    )
    async with bot_factory(env=env, overrides=overrides) as bot:
        deployment_id = await paused_canary(bot)
        await click(bot, "U0RM1", "release_rollout_promote", deployment_id)
        answer = told(slack, "U0RM1")
        assert "the production gate needs 2 from <!subteam^S0RELMGRS>" in answer
        assert "a canary step is promoted by one person" in answer
        assert edge.argocd.actions_run() == []  # the quorum is never skipped
        [refused] = audited(bot, "rollout.action_refused")
        assert refused["actor"] == "U0RM1"
