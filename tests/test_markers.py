"""Deploy markers: a deploy opens a Grafana region and closes it when it ends, Datadog and New
Relic hear of it, rollbacks, break-glass and failed verifications are marked, a 503 is retried
and a refused key is given up on with an audited failure. Grafana, Datadog and New Relic are
fakes answering as their HTTP APIs do (paths, auth headers, bodies and error bodies)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.domain.errors import ConfigError
from bot.domain.messages import DeployMarker
from bot.scheduling import checks_tick
from bot.store.tables import AuditEvent, OutboxMessage
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import SHA_A, SHA_B, deployment_status, encode, example_config_data
from tests.helpers import github_headers as signed
from tests.slackflow import CHANNEL, click, request_gate, submit_reason, the_gate

GRAFANA_TOKEN = "glsa_grafana-service-account-token"
DD_API_KEY = "dd-api-key-0123456789abcdef"
NR_API_KEY = "NRAK-NEWRELICUSERKEY0123456789"
SECRETS = {
    "GRAFANA_URL": "https://grafana.acme.example",
    "GRAFANA_TOKEN": GRAFANA_TOKEN,
    "DD_API_KEY": DD_API_KEY,
    "NEW_RELIC_API_KEY": NR_API_KEY,
    "PD_CHECKOUT_ROUTING_KEY": "pd-routing-key",
}
MARKERS = {
    "grafana": {"token_env": "GRAFANA_TOKEN", "dashboard_uid": "checkout-overview"},
    "datadog": {"site": "datadoghq.eu", "api_key_env": "DD_API_KEY", "tags": ["team:payments"]},
    "newrelic": {
        "region": "us",
        "api_key_env": "NEW_RELIC_API_KEY",
        "entity_guid": "MXxBUE18QVBQTElDQVRJT058MTIz",
    },
}


class FakeGrafana:
    """Grafana's annotations API: POST creates (answers its id), PATCH updates; a bearer
    token other than the service account's is 401 `{"message": "Unauthorized"}`."""

    def __init__(self) -> None:
        self.annotations: dict[int, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {GRAFANA_TOKEN}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        body = json.loads(request.content)
        if request.method == "POST" and request.url.path == "/api/annotations":
            if "text" not in body:
                return httpx.Response(400, json={"message": "bad request data"})
            annotation_id = len(self.annotations) + 1
            self.annotations[annotation_id] = body
            return httpx.Response(200, json={"message": "Annotation added", "id": annotation_id})
        if request.method == "PATCH" and request.url.path.startswith("/api/annotations/"):
            annotation_id = int(request.url.path.rsplit("/", 1)[1])
            if annotation_id not in self.annotations:
                return httpx.Response(404, json={"message": "Could not find annotation to update"})
            self.annotations[annotation_id].update(body)
            return httpx.Response(200, json={"message": "Annotation patched"})
        return httpx.Response(404, json={"message": "Not found"})


class FakeDatadog:
    """Datadog's Events API v1: 202 with the event; 403 `{"errors": ["Forbidden"]}` for a
    wrong DD-API-KEY; answers the statuses queued first (a 503 from its edge)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.queued: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.queued:
            status = self.queued.pop(0)
            if status == 401:
                return httpx.Response(401, json={"errors": ["Unauthorized"]})
            return httpx.Response(status, text="<html>Service Unavailable</html>")
        if request.headers.get("dd-api-key") != DD_API_KEY:
            return httpx.Response(403, json={"errors": ["Forbidden"]})
        body = json.loads(request.content)
        event_id = 7000000000000000000 + len(self.events)
        self.events.append(body)
        return httpx.Response(
            202,
            json={
                "status": "ok",
                "event": {"id": event_id, "id_str": str(event_id), **body},
            },
        )


class FakeNewRelic:
    """NerdGraph: 401 for a wrong API-Key; `changeTrackingCreateDeployment` answers its
    deploymentId; an unknown entity is a GraphQL error in a 200."""

    def __init__(self) -> None:
        self.mutations: list[str] = []
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("api-key") != NR_API_KEY:
            return httpx.Response(401, json={"errors": [{"message": "Invalid API key"}]})
        query = json.loads(request.content)["query"]
        if MARKERS["newrelic"]["entity_guid"] not in query:
            return httpx.Response(
                200, json={"data": None, "errors": [{"message": "Entity not found"}]}
            )
        self.mutations.append(query)
        deployment_id = f"c0ffee-{len(self.mutations)}"
        return httpx.Response(
            200,
            json={
                "data": {
                    "changeTrackingCreateDeployment": {
                        "deploymentId": deployment_id,
                        "entityGuid": MARKERS["newrelic"]["entity_guid"],
                    }
                }
            },
        )


class Observability:
    """The fake outside world with Grafana, Datadog and New Relic beside it."""

    def __init__(self) -> None:
        self.edge = FakeEdge()
        self.grafana = FakeGrafana()
        self.datadog = FakeDatadog()
        self.newrelic = FakeNewRelic()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "grafana.acme.example":
            return self.grafana.handle(request)
        if host == "api.datadoghq.eu":
            return self.datadog.handle(request)
        if host == "api.newrelic.com":
            return self.newrelic.handle(request)
        return self.edge.transport.handle_request(request)


def config_with_markers(**changes: Any) -> Config:
    data = example_config_data()
    data["services"]["checkout"]["markers"] = {**MARKERS, **changes}
    return parse_config(data)


@pytest.fixture
def world() -> Observability:
    return Observability()


@asynccontextmanager
async def running(
    bot_factory: BotFactory,
    clock: FrozenClock,
    world: Observability,
    key: str,
    config: Config | None = None,
    secrets: dict[str, str] | None = None,
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=world.transport,
        config=config or config_with_markers(),
        environ=SECRETS if secrets is None else secrets,
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": key}
    async with bot_factory(env=env, overrides=overrides) as bot:
        yield bot


async def report(bot: Bot, state: str, sha: str = SHA_A, deployment_id: int = 1) -> None:
    body = encode(deployment_status(state, sha=sha, deployment_id=deployment_id))
    answer = await bot.post("/webhooks/github", body, signed("deployment_status", body))
    assert answer.status_code == 202, answer.text
    await bot.send_outbox()


def audited(bot: Bot, action: str) -> list[dict[str, Any]]:
    with bot.runtime.db.read() as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
    return [json.loads(row.details) for row in rows]


def all_audit_text(bot: Bot) -> str:
    with bot.runtime.db.read() as session:
        return " ".join(row.details for row in session.exec(select(AuditEvent)).all())


def marker_rows(bot: Bot) -> list[tuple[str, str]]:
    with bot.runtime.db.read() as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == DeployMarker.KIND)
        ).all()
    return [(row.payload["platform"], row.status) for row in rows]


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_a_deploy_opens_a_grafana_region_closes_it_and_tells_datadog_and_new_relic(
    bot_factory: BotFactory, clock: FrozenClock, world: Observability, app_private_key: str
) -> None:
    async with running(bot_factory, clock, world, app_private_key) as bot:
        started = clock.now()
        await report(bot, "in_progress")
        assert list(world.grafana.annotations) == [1]
        opened = world.grafana.annotations[1]
        assert opened["time"] == millis(started) and "timeEnd" not in opened
        assert opened["dashboardUID"] == "checkout-overview"
        assert {"service:checkout", "environment:production", f"version:{SHA_A[:12]}"} <= set(
            opened["tags"]
        )
        assert world.datadog.events == [] and world.newrelic.mutations == []

        clock.advance(minutes=3)
        ended = clock.now()
        world.datadog.queued = [503]  # Datadog's edge is down for a moment
        await report(bot, "success")
        [patch] = [r for r in world.grafana.requests if r.method == "PATCH"]
        assert patch.url.path == "/api/annotations/1"
        assert patch.headers["authorization"] == f"Bearer {GRAFANA_TOKEN}"
        region = world.grafana.annotations[1]
        assert (region["time"], region["timeEnd"]) == (millis(started), millis(ended))
        assert len(world.grafana.annotations) == 1  # the same annotation, now a region
        assert world.datadog.events == [] and len(world.datadog.requests) == 1
        [mutation] = world.newrelic.mutations
        assert "changeTrackingCreateDeployment" in mutation
        assert f'version: "{SHA_A[:12]}"' in mutation
        assert f"timestamp: {millis(ended)}" in mutation
        assert world.newrelic.requests[0].headers["api-key"] == NR_API_KEY
        assert str(world.newrelic.requests[0].url) == "https://api.newrelic.com/graphql"

        clock.advance(minutes=5)  # the outbox tries Datadog again after its backoff
        await bot.send_outbox()
        [event] = world.datadog.events
        request = world.datadog.requests[-1]
        assert str(request.url) == "https://api.datadoghq.eu/api/v1/events"
        assert request.headers["dd-api-key"] == DD_API_KEY
        assert event["alert_type"] == "success"
        assert event["date_happened"] == int(ended.timestamp())
        assert {"service:checkout", "env:production", "team:payments"} <= set(event["tags"])

        receipts = audited(bot, "marker.delivered")
        assert sorted((r["platform"], r["phase"], r["id"]) for r in receipts) == [
            ("datadog", "end", "7000000000000000000"),
            ("grafana", "end", "1"),
            ("grafana", "start", "1"),
            ("newrelic", "end", "c0ffee-1"),
        ]
        text = all_audit_text(bot)
        assert GRAFANA_TOKEN not in text and DD_API_KEY not in text and NR_API_KEY not in text
        assert set(marker_rows(bot)) == {
            ("grafana", "sent"),
            ("datadog", "sent"),
            ("newrelic", "sent"),
        }


async def test_a_deploy_first_seen_finished_gets_a_whole_region(
    bot_factory: BotFactory, clock: FrozenClock, world: Observability, app_private_key: str
) -> None:
    async with running(bot_factory, clock, world, app_private_key) as bot:
        await report(bot, "success")
    [region] = world.grafana.annotations.values()
    assert region["time"] == region["timeEnd"] == millis(clock.now())
    assert [r.method for r in world.grafana.requests] == ["POST"]


async def test_a_refused_key_is_given_up_on_at_once_and_audited(
    bot_factory: BotFactory, clock: FrozenClock, world: Observability, app_private_key: str
) -> None:
    wrong = {**SECRETS, "GRAFANA_TOKEN": "glsa_revoked", "NEW_RELIC_API_KEY": "NRAK-REVOKED"}
    async with running(bot_factory, clock, world, app_private_key, secrets=wrong) as bot:
        world.datadog.queued = [401]
        await report(bot, "success")
        clock.advance(hours=1)
        await bot.send_outbox()  # nothing is tried again
        assert len(world.grafana.requests) == 1 and len(world.datadog.requests) == 1
        assert len(world.newrelic.requests) == 1
        failures = {r["platform"]: r["reason"] for r in audited(bot, "marker.failed")}
        assert audited(bot, "marker.delivered") == []
        assert set(marker_rows(bot)) == {
            ("grafana", "dead"),
            ("datadog", "dead"),
            ("newrelic", "dead"),
        }
        text = all_audit_text(bot)
    assert failures == {
        "grafana": "grafana: POST /api/annotations: 401 Unauthorized",
        "datadog": "datadog: POST /api/v1/events: 401 Unauthorized",
        "newrelic": "newrelic: POST /graphql: 401 Invalid API key",
    }
    assert "glsa_revoked" not in text and "NRAK-REVOKED" not in text


async def test_a_missing_variable_and_an_unknown_entity_are_audited_failures(
    bot_factory: BotFactory, clock: FrozenClock, world: Observability, app_private_key: str
) -> None:
    config = config_with_markers(
        newrelic={"api_key_env": "NEW_RELIC_API_KEY", "entity_guid": "NOT-AN-ENTITY"}
    )
    secrets = {k: v for k, v in SECRETS.items() if k != "DD_API_KEY"}
    async with running(bot_factory, clock, world, app_private_key, config, secrets) as bot:
        await report(bot, "success")
        failures = {r["platform"]: r["reason"] for r in audited(bot, "marker.failed")}
    assert failures == {
        "datadog": "DD_API_KEY is not set: cannot reach datadog",
        "newrelic": "newrelic: changeTrackingCreateDeployment: Entity not found",
    }
    assert world.datadog.requests == []
    assert len(world.grafana.annotations) == 1


async def test_a_failed_verification_and_its_rollback_are_marked(
    bot_factory: BotFactory,
    clock: FrozenClock,
    world: Observability,
    app_private_key: str,
    slack: FakeSlackWebApi,
) -> None:
    async with running(bot_factory, clock, world, app_private_key) as bot:
        await report(bot, "success", SHA_B, 1)
        clock.advance(hours=1)
        await report(bot, "success", SHA_A, 2)
        world.edge.health.queued = [500]
        await checks_tick(bot.runtime)
        await bot.send_outbox()
    points = [a for a in world.grafana.annotations.values() if "timeEnd" not in a]
    assert [a["tags"][4] for a in points] == ["verification-failed", "rollback"]
    assert "Verification failed: health" in points[0]["text"]
    assert f"Rolling back to {SHA_B[:12]}: verification failed: health" in points[1]["text"]
    kinds = [(e["alert_type"], e["title"].split(":")[0]) for e in world.datadog.events]
    assert kinds[-2:] == [("error", "Verification failed"), ("warning", "Rollback")]
    assert len(world.newrelic.mutations) == 2  # the two deploys only


async def test_break_glass_is_marked(
    bot_factory: BotFactory,
    clock: FrozenClock,
    world: Observability,
    app_private_key: str,
    slack: FakeSlackWebApi,
) -> None:
    clock.set(datetime(2026, 12, 24, 10, 0, tzinfo=UTC))  # inside the year-end freeze
    world.edge.github.commit_author = "someone-else"
    async with running(bot_factory, clock, world, app_private_key) as bot:
        await request_gate(bot)
        gate = the_gate(bot)
        await click(bot, "U0RM1", "release_break_glass", gate.id or 0)
        await submit_reason(bot, slack, "U0RM1", "payments are down for every customer")
        await click(bot, "U0SRE1", "release_break_glass_confirm", gate.id or 0)
        assert the_gate(bot).status == "approved"
    [annotation] = world.grafana.annotations.values()
    assert "break-glass" in annotation["tags"]
    assert annotation["text"].endswith("Break-glass: payments are down for every customer")
    [event] = world.datadog.events
    assert event["alert_type"] == "warning" and "event:break_glass" in event["tags"]
    assert slack.messages(CHANNEL)


def test_a_marker_message_round_trips_its_payload() -> None:
    marker = DeployMarker(
        deployment_id=3,
        platform="grafana",
        event="deploy",
        phase="end",
        service="checkout",
        environment="production",
        version="abc",
        title="Deploy",
        text="t",
        started_at="2026-11-17T10:00:00+00:00",
        ended_at="2026-11-17T10:03:00+00:00",
        outcome="succeeded",
    )
    assert DeployMarker.from_payload(marker.to_payload()) == marker
    assert marker.key == "marker:3:grafana"


@pytest.mark.parametrize(
    "markers,path,problem",
    [
        ({}, "services.checkout.markers", "set grafana, datadog or newrelic"),
        (
            {"datadog": {"site": "datadoghq.io", "api_key_env": "DD_API_KEY"}},
            "services.checkout.markers.datadog.site",
            "datadoghq.com",
        ),
        (
            {"grafana": {"token_env": "glsa_abc-123"}},
            "services.checkout.markers.grafana.token_env",
            "name the variable that holds the secret, not the secret",
        ),
        (
            {"newrelic": {"region": "apac", "api_key_env": "K", "entity_guid": "g"}},
            "services.checkout.markers.newrelic.region",
            "'us'",
        ),
        (
            {"newrelic": {"api_key_env": "K"}},
            "services.checkout.markers.newrelic.entity_guid",
            "",
        ),
    ],
)
def test_a_bad_markers_block_names_its_yaml_path(
    markers: dict[str, Any], path: str, problem: str
) -> None:
    data = example_config_data()
    data["services"]["checkout"]["markers"] = markers
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(p.startswith(path) and problem in p for p in caught.value.problems), (
        caught.value.problems
    )
