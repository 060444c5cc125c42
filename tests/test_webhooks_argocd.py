"""POST /webhooks/argocd: the documented templates, the parser and the route agree."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store.tables import Deployment, OutboxMessage, WebhookDelivery
from integrations.argocd import payloads
from integrations.payloads import PayloadError
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.helpers import (
    ARGOCD_SECRET,
    FIXTURES,
    REPO_ROOT,
    SHA_A,
    SHA_B,
    argocd_body,
    argocd_headers,
    encode,
    rows,
)

DOC = REPO_ROOT / "docs" / "argocd-notifications.md"
EVENTS = ("sync-running", "sync-succeeded", "sync-failed", "health-degraded")
# Catalog trigger (tests/fixtures/argocd) whose condition each of our sync triggers repeats.
CATALOG_TRIGGER = {
    "sync-succeeded": "on-sync-succeeded",
    "sync-failed": "on-sync-failed",
    "health-degraded": "on-health-degraded",
}
# Application fields our templates read that no catalog template or trigger reads (they are
# in the Application CRD: status.operationState.operation.initiatedBy, status.health.message).
CRD_FIELDS = {
    ".app.status.operationState.operation.initiatedBy.username",
    ".app.status.operationState.operation.initiatedBy.automated",
    ".app.status.health.message",
}

# An Application as the notifications controller sees it (plus its `context`).
SAMPLE: dict[str, Any] = {
    "app": {
        "metadata": {"name": "storefront-prod", "namespace": "argocd"},
        "status": {
            "sync": {"status": "Synced", "revision": SHA_A},
            "health": {"status": "Healthy", "message": 'pod "web-1" is "ready"'},
            "operationState": {
                "phase": "Succeeded",
                "message": 'successfully synced (all tasks run)\nsee "web"',
                "startedAt": "2026-11-17T09:58:00Z",
                "finishedAt": "2026-11-17T09:59:30Z",
                "syncResult": {"revision": SHA_A},
                "operation": {"initiatedBy": {"username": "alice"}},
            },
        },
    },
    "context": {"argocdUrl": "https://argocd.example"},
}


def configmap() -> dict[str, Any]:
    """The argocd-notifications-cm ConfigMap of the doc's first YAML block that holds it."""
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S):
        data = yaml.safe_load(block)
        if data.get("kind") == "ConfigMap":
            assert data["metadata"]["name"] == "argocd-notifications-cm"
            config: dict[str, Any] = data["data"]
            return config
    raise AssertionError("no argocd-notifications-cm block in the doc")


def subscription() -> dict[str, str]:
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S):
        data = yaml.safe_load(block)
        if data.get("kind") == "Application":
            annotations: dict[str, str] = data["metadata"]["annotations"]
            return annotations
    raise AssertionError("no Application block in the doc")


def lookup(values: dict[str, Any], path: str) -> Any:
    current: Any = values
    for part in path.lstrip(".").split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def render(template: str, values: dict[str, Any]) -> str:
    """A tiny Go-template stand-in: `{{.a.b}}` and `{{toJson .a.b}}`, nothing else.

    A missing value prints like Go's text/template does: `<no value>`, and `null` via toJson.
    """

    def one(match: re.Match[str]) -> str:
        value = lookup(values, match.group(2))
        if match.group(1):  # toJson
            return json.dumps(value)
        return "<no value>" if value is None else str(value)

    rendered = re.sub(r"\{\{\s*(toJson\s+)?(\.[\w.]+)\s*\}\}", one, template)
    assert "{{" not in rendered, f"the test renderer cannot render: {rendered}"
    return rendered


def template_body(event: str) -> str:
    template = yaml.safe_load(configmap()[f"template.releasebot-{event}"])
    webhook = template["webhook"]["releasebot"]
    assert webhook["method"] == "POST"
    body: str = webhook["body"]
    return body


def variables(text: str) -> set[str]:
    return set(re.findall(r"\{\{-?\s*(?:toJson\s+)?(\.[\w.]+)", text))


# --- the doc and the parser cannot drift ---------------------------------------------------


@pytest.mark.parametrize("event", EVENTS)
def test_each_documented_template_renders_a_body_the_parser_reads(event: str) -> None:
    parsed = payloads.parse(json.loads(render(template_body(event), SAMPLE)))
    assert parsed.event is not None
    assert parsed.event.target.provider == "argocd"
    assert parsed.event.target.app == "storefront-prod"
    assert parsed.event.sha == SHA_A
    assert parsed.event.status == payloads.EVENTS[event]
    assert parsed.event.source_event == f"argocd.{event}"
    assert parsed.event.url == "https://argocd.example/applications/storefront-prod"
    assert parsed.event.actor == "alice"
    assert parsed.delivery.startswith("argocd-")


def test_a_degraded_app_is_a_failure_noted_as_health_degraded() -> None:
    values = copy.deepcopy(SAMPLE)
    values["app"]["status"]["health"] = {"status": "Degraded", "message": "crash loop"}
    parsed = payloads.parse(json.loads(render(template_body("health-degraded"), values)))
    assert parsed.event is not None
    assert parsed.event.status == "failed"
    assert parsed.event.description == "health degraded (Degraded): crash loop"


def test_a_sync_without_a_result_yet_uses_the_compared_revision() -> None:
    values = copy.deepcopy(SAMPLE)
    state = values["app"]["status"]["operationState"]
    del state["syncResult"], state["finishedAt"], state["operation"]
    state["phase"] = "Running"
    values["app"]["status"]["sync"]["revision"] = SHA_B
    body = json.loads(render(template_body("sync-running"), values))
    assert body["revision"] is None and body["finishedAt"] is None
    parsed = payloads.parse(body)
    assert parsed.event is not None
    assert (parsed.event.sha, parsed.event.status, parsed.event.actor) == (
        SHA_B,
        "in_progress",
        None,
    )


def test_the_sync_triggers_fire_when_the_argo_cd_catalog_ones_do() -> None:
    config = configmap()
    for event in EVENTS:
        [rule] = yaml.safe_load(config[f"trigger.releasebot-{event}"])
        assert rule["send"] == [f"releasebot-{event}"]
        assert rule["oncePer"]
        if event in CATALOG_TRIGGER:
            path = FIXTURES / "argocd" / f"trigger__{CATALOG_TRIGGER[event]}.yaml"
            [catalog] = yaml.safe_load(path.read_text())
            assert rule["when"] == catalog["when"]
    [running] = yaml.safe_load(config["trigger.releasebot-sync-running"])
    assert "phase in ['Running']" in running["when"]


def test_the_service_sends_json_and_the_secret_header() -> None:
    service = yaml.safe_load(configmap()["service.webhook.releasebot"])
    assert service["url"].endswith("/webhooks/argocd")
    headers = {h["name"]: h["value"] for h in service["headers"]}
    assert headers == {
        "Content-Type": "application/json",
        "X-Releasebot-Token": "$releasebot-token",
    }


def test_every_application_subscribes_to_the_four_triggers() -> None:
    assert subscription() == {
        f"notifications.argoproj.io/subscribe.releasebot-{event}.releasebot": "" for event in EVENTS
    }


def catalog_vocabulary() -> set[str]:
    """Every Application path Argo CD's catalog templates and triggers read."""
    found: set[str] = set()
    for path in (FIXTURES / "argocd").glob("*.yaml"):
        text = path.read_text().replace("?.", ".")
        found |= variables(text)
        found |= {"." + m for m in re.findall(r"\b(app\.(?:status|metadata)[\w.]+)", text)}
    return found


def test_our_templates_read_only_what_argo_cd_provides() -> None:
    """Each variable is one Argo CD's own catalog reads, or a documented CRD field."""
    ours = set().union(*(variables(template_body(event)) for event in EVENTS))
    assert ours - catalog_vocabulary() <= CRD_FIELDS, sorted(ours - catalog_vocabulary())


@pytest.mark.parametrize("path", sorted((FIXTURES / "argocd").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_catalog_fixture_agrees_with_the_doc_and_the_sample_app(path: Path) -> None:
    """Catalog triggers: ours fire on the same condition. Catalog templates: every status
    field they read exists in SAMPLE, so the rendering tests above use a real app's shape."""
    kind, name = path.stem.split("__")
    if kind == "trigger":
        [catalog] = yaml.safe_load(path.read_text())
        event = {v: k for k, v in CATALOG_TRIGGER.items()}[name]
        [ours] = yaml.safe_load(configmap()[f"trigger.releasebot-{event}"])
        assert ours["when"] == catalog["when"]
        return
    read = {v for v in variables(path.read_text()) if v.startswith((".app.status", ".app.meta"))}
    assert read, "a catalog template reads the app's status"
    missing = {v for v in read if lookup(SAMPLE, v) is None} - {".app.status.conditions"}
    assert not missing


@settings(max_examples=200, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["event", "app", "revision", "syncRevision", "startedAt", "url"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=45)
        | st.sampled_from([SHA_A, "sync-running", "health-degraded", "<no value>"]),
    )
)
def test_any_body_either_parses_or_is_a_payload_error(body: dict[str, Any]) -> None:
    try:
        payloads.parse(body)
    except PayloadError:
        pass


# --- through the app ----------------------------------------------------------------------


@pytest.fixture
async def argocd_bot(bot_factory: BotFactory) -> Any:
    async with bot_factory(env={"ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET}) as running:
        yield running


async def post(bot: Bot, body: dict[str, Any], **headers: Any) -> Any:
    return await bot.post("/webhooks/argocd", encode(body), argocd_headers(**headers))


async def test_a_sync_posts_one_message_then_edits_it(
    argocd_bot: Bot, slack: FakeSlackWebApi
) -> None:
    answer = await post(argocd_bot, argocd_body("sync-running"))
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    await argocd_bot.send_outbox()
    [message] = slack.messages("#storefront-deploys")
    assert "Deploying" in message["text"]

    answer = await post(argocd_bot, argocd_body("sync-succeeded"))
    assert answer.json()["status"] == "accepted"
    await argocd_bot.send_outbox()
    [message] = slack.messages("#storefront-deploys")
    assert message["edited"] is True and "Verifying" in message["text"]  # synced; checks next
    [deployment] = rows(argocd_bot, Deployment)
    assert (deployment.service, deployment.environment, deployment.state) == (
        "storefront",
        "production",
        "verifying",
    )
    assert deployment.ci_url == "https://argocd.example/applications/storefront-prod"
    assert deployment.deployer == "alice"


async def test_a_failed_sync_fails_the_deployment(argocd_bot: Bot) -> None:
    await post(argocd_bot, argocd_body("sync-running"))
    answer = await post(argocd_bot, argocd_body("sync-failed"))
    assert answer.json()["status"] == "accepted"
    [deployment] = rows(argocd_bot, Deployment)
    assert deployment.state == "failed"


async def test_degraded_health_after_success_changes_nothing(argocd_bot: Bot) -> None:
    await post(argocd_bot, argocd_body("sync-succeeded"))
    answer = await post(argocd_bot, argocd_body("health-degraded"))
    assert answer.json()["status"] == "ignored"  # verification judges a landed deploy
    [deployment] = rows(argocd_bot, Deployment)
    assert deployment.state == "verifying"


async def test_argo_cd_retries_of_one_notification_are_duplicates(
    argocd_bot: Bot, slack: FakeSlackWebApi
) -> None:
    first = await post(argocd_bot, argocd_body("sync-succeeded"))
    again = await post(argocd_bot, argocd_body("sync-succeeded"))
    await argocd_bot.send_outbox()
    assert first.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    assert len(rows(argocd_bot, WebhookDelivery)) == 1
    assert len(slack.messages("#storefront-deploys")) == 1


async def test_a_delivery_header_names_the_delivery(argocd_bot: Bot) -> None:
    answer = await post(argocd_bot, argocd_body("sync-succeeded"), delivery="argo-7")
    assert answer.json() == {"status": "accepted", "delivery": "argo-7"}


async def test_an_app_no_service_tracks_is_ignored(argocd_bot: Bot) -> None:
    answer = await post(argocd_bot, argocd_body("sync-succeeded", app="someone-else"))
    assert answer.json()["status"] == "ignored"
    assert "no configured service tracks argocd:someone-else" in answer.json()["detail"]
    assert rows(argocd_bot, Deployment) == []


# --- refused requests change nothing -------------------------------------------------------


async def assert_nothing_changed(bot: Bot, slack: FakeSlackWebApi) -> None:
    await bot.send_outbox()
    assert rows(bot, WebhookDelivery) == []
    assert rows(bot, Deployment) == []
    assert rows(bot, OutboxMessage) == []
    assert slack.calls == []


async def test_a_wrong_token_is_refused(argocd_bot: Bot, slack: FakeSlackWebApi) -> None:
    answer = await post(argocd_bot, argocd_body("sync-succeeded"), token="not the secret")
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid X-Releasebot-Token"}
    await assert_nothing_changed(argocd_bot, slack)


async def test_a_missing_token_is_refused(argocd_bot: Bot, slack: FakeSlackWebApi) -> None:
    answer = await argocd_bot.post(
        "/webhooks/argocd",
        encode(argocd_body("sync-succeeded")),
        {"content-type": "application/json"},
    )
    assert answer.status_code == 401
    await assert_nothing_changed(argocd_bot, slack)


async def test_without_a_configured_secret_everything_is_refused(
    bot: Bot, slack: FakeSlackWebApi
) -> None:
    answer = await post(bot, argocd_body("sync-succeeded"))
    assert answer.status_code == 401
    assert "not configured" in answer.json()["error"]
    await assert_nothing_changed(bot, slack)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"revision": "1.4.2", "syncRevision": "1.4.2"}, "revision must be a full commit sha"),
        ({"revision": "<no value>", "syncRevision": None}, "revision is required"),
        ({"app": None}, "app is required"),
        ({"event": "on-deployed"}, "event must be one of sync-running, sync-succeeded"),
    ],
)
async def test_a_missing_or_wrong_field_is_a_400_naming_it(
    argocd_bot: Bot, slack: FakeSlackWebApi, change: dict[str, Any], error: str
) -> None:
    answer = await post(argocd_bot, {**argocd_body("sync-succeeded"), **change})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(error)
    await assert_nothing_changed(argocd_bot, slack)


async def test_malformed_json_is_a_400(argocd_bot: Bot, slack: FakeSlackWebApi) -> None:
    answer = await argocd_bot.post("/webhooks/argocd", b'{"app": "x",}', argocd_headers())
    assert answer.status_code == 400
    assert "malformed JSON" in answer.json()["error"]
    await assert_nothing_changed(argocd_bot, slack)


async def test_an_oversized_body_is_a_413(bot_factory: BotFactory, slack: FakeSlackWebApi) -> None:
    env = {"ARGOCD_WEBHOOK_SECRET": ARGOCD_SECRET, "RELEASEBOT_MAX_BODY_BYTES": "256"}
    async with bot_factory(env=env) as bot:
        body = argocd_body("sync-succeeded")
        answer = await post(bot, body)
        assert len(encode(body)) > 256 and answer.status_code == 413
        await assert_nothing_changed(bot, slack)


async def test_a_wrong_content_type_is_a_415(argocd_bot: Bot, slack: FakeSlackWebApi) -> None:
    headers = argocd_headers()
    headers["content-type"] = "text/plain"
    answer = await argocd_bot.post("/webhooks/argocd", encode(argocd_body("sync-failed")), headers)
    assert answer.status_code == 415
    await assert_nothing_changed(argocd_bot, slack)
