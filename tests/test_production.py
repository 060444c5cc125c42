"""Production is a property of an environment, not its name: `production: true|false` on an
environment entry, by default the last environment of a service's list. It decides the
PagerDuty change events, the page's severity, the risk inputs, DORA (the metrics, the
digest, the terminal table and the dashboard's series) and the evidence pack.

The DORA history below (NOW is Tuesday 2026-11-17 10:00 UTC; "-3d+10m" is NOW - 3 days +
10 minutes; lead = commit authored -> deployed), under this config:

    web:    staging, prod                        -> production: prod (the last)
    api:    eu (production: true), sandbox (production: false)   -> production: eu
    legacy: not in the config (history only)     -> production: the names production has for
                                                    the configured services (prod, eu)

web
  W1  prod        deployed -5d     verified              lead 2h
  W2  prod        created  -3d     failed at -3d+10m, never ran; no incident record
  W3  prod        created  -3d+1h, deployed -3d+3h, verified, lead 10h -> W2 recovered in 2h50m
  WS  staging     deployed -2d     verified              lead 1h   (not production)
  WP  production  deployed -1d     verified              lead 3h   (a name web does not use as
                                                                    production: not counted)
api
  A1  eu          deployed -4d     verification_failed   lead 6h   incident resolved: 1h
  A2  sandbox     deployed -2d-1h  verified              (not production)
  A2  eu          deployed -2d     verified              lead 4h   (measured at eu)
  AS  sandbox     deployed -1d     verification_failed, incident resolved 5h (not production)
legacy
  X1  prod        deployed -1d     verified              lead 8h
  XS  staging     deployed -1d     failed                          (not production)

7 days:  web     W1 W2 W3 = 3 deployments, 1 failure (W2), CFR 1/3, leads 2 10 -> 6h,
                 recovery 2h50m
         api     A1 A2 = 2 deployments, 1 failure (A1), CFR 1/2, leads 6 4 -> 5h, recovery 1h
         legacy  X1 = 1 deployment, 0 failures, CFR 0, lead 8h
         overall 6 deployments (6/7 a day), 2 failures, CFR 1/3, leads 2 4 6 8 10 -> 6h,
                 recoveries 1h 2h50m -> 1h55m
Without a config (every environment named production): WP only, 1 deployment, lead 3h.
The dashboard's series over the week: deploys W1 W3 A1 A2 X1 = 5 (W2 never ran), 1 failed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from bot.app import Overrides
from bot.cli import main
from bot.config import Config, config_json_schema, load_config, parse_config
from bot.domain import states
from bot.scheduling import checks_tick
from bot.services import assessment, dashboard, dora, evidence
from bot.services.production import Production
from bot.store.db import Database
from bot.store.tables import Deployment, Release
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import (
    EXAMPLE_CONFIG,
    SHA_A,
    deployment_status,
    encode,
    example_config_data,
    github_headers,
)
from tests.test_dora import NOW, History, ago, commit

ROUTING_KEY = "pd-checkout-routing-key"
SLACK = {"bot_token_env": "SLACK_BOT_TOKEN", "default_channel": "#deploys"}


def environment(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "track": {"generic": True}, **extra}


def dora_config_data() -> dict[str, Any]:
    return {
        "slack": example_config_data()["slack"],
        "services": {
            "web": {
                "repo": "github:acme/web",
                "environments": [environment("staging"), environment("prod")],
            },
            "api": {
                "repo": "github:acme/api",
                "environments": [
                    environment("eu", production=True),
                    environment("sandbox", production=False),
                ],
            },
        },
    }


def dora_config() -> Config:
    return parse_config(dora_config_data())


# --- the config -----------------------------------------------------------------------------


def test_the_last_environment_is_production_unless_one_says_otherwise() -> None:
    config = dora_config()
    web, api = config.services["web"], config.services["api"]
    assert [web.is_production(e) for e in ("staging", "prod", "production")] == [
        False,
        True,
        False,
    ]
    assert [api.is_production(e) for e in ("eu", "sandbox")] == [True, False]
    assert config.production_environments() == {("web", "prod"), ("api", "eu")}
    # A service the config does not list (its history only): the names production has.
    assert config.is_production("legacy", "prod") and config.is_production("legacy", "eu")
    assert not config.is_production("legacy", "production")
    assert not config.is_production("legacy", "staging")
    assert config.production_environments_of("legacy") == ["eu", "prod"]

    example = load_config(EXAMPLE_CONFIG)
    assert example.production_environments() == {(name, "production") for name in example.services}


def test_both_may_be_production_and_an_explicit_false_on_the_last_wins() -> None:
    data = {
        "slack": example_config_data()["slack"],
        "services": {
            "web": {
                "repo": "github:acme/web",
                "environments": [
                    environment("eu", production=True),
                    environment("us"),
                ],
            },
            "batch": {
                "repo": "github:acme/batch",
                "environments": [environment("only", production=False)],
            },
        },
    }
    config = parse_config(data)
    assert config.services["web"].production_environments() == ["eu", "us"]
    assert config.services["batch"].production_environments() == []
    del data["services"]["web"]
    nothing = parse_config(data)
    assert nothing.production_environments() == frozenset()
    assert nothing.production_environments_of("legacy") == ["production"]


def test_the_schema_describes_the_key_and_the_example_checks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    field = config_json_schema()["$defs"]["Environment"]["properties"]["production"]
    assert {"type": "boolean"} in field["anyOf"]
    assert "last environment" in field["description"]
    assert main(["config", "check", str(EXAMPLE_CONFIG)]) == 0
    assert "OK" in capsys.readouterr().out


# --- DORA -----------------------------------------------------------------------------------


@pytest.fixture
def history(db: Database) -> History:
    h = History(db)

    def deploy(name: str, service: str, env: str, hours: list[float], **at: Any) -> None:
        deployed = ago(**at)
        commits = [commit(f"{name.lower()}{i}", deployed - _hours(h)) for i, h in enumerate(hours)]
        h.release(name, service, commits, created=deployed - _hours(1))
        h.deploy(
            name,
            release=name,
            service=service,
            environment=env,
            state=states.VERIFIED,
            created=deployed - _hours(0.5),
            deployed=deployed,
            finished=deployed + _hours(0.25),
        )

    deploy("W1", "web", "prod", [2], days=5)
    h.release("W2", "web", [commit("w2", ago(days=3, hours=-1))], created=ago(days=3))
    h.deploy(
        "W2",
        release="W2",
        service="web",
        environment="prod",
        state=states.FAILED,
        created=ago(days=3),
        deployed=None,
        finished=ago(days=3, minutes=10),
    )
    w3 = ago(days=3, hours=3)
    h.release("W3", "web", [commit("w3", w3 - _hours(10))], created=ago(days=3))
    h.deploy(
        "W3",
        release="W3",
        service="web",
        environment="prod",
        state=states.VERIFIED,
        created=ago(days=3, hours=1),
        deployed=w3,
        finished=w3 + _hours(0.25),
    )
    deploy("WS", "web", "staging", [1], days=2)
    deploy("WP", "web", "production", [3], days=1)

    deploy("A1", "api", "eu", [6], days=4)
    h.db.write(lambda s: _set_state(s, h.ids["A1"], states.VERIFICATION_FAILED))
    h.record("incident.opened", "A1", ago(days=4, minutes=5), check="health")
    h.record(
        "incident.resolved",
        "A1",
        ago(days=4, hours=1, minutes=5),
        recovery_seconds=3600,
        dedup_key=f"releasebot/api/eu/{h.ids['A1']}",
    )
    a2 = ago(days=2)
    h.release("A2", "api", [commit("a2", a2 - _hours(4))], created=a2 - _hours(2))
    for name, env, at in (("A2S", "sandbox", a2 - _hours(1)), ("A2", "eu", a2)):
        h.deploy(
            name,
            release="A2",
            service="api",
            environment=env,
            state=states.VERIFIED,
            created=at - _hours(0.25),
            deployed=at,
            finished=at + _hours(0.25),
        )
    deploy("AS", "api", "sandbox", [1], days=1)
    h.db.write(lambda s: _set_state(s, h.ids["AS"], states.VERIFICATION_FAILED))
    h.record(
        "incident.resolved",
        "AS",
        ago(days=1, minutes=-30),
        recovery_seconds=5 * 3600,
        dedup_key=f"releasebot/api/sandbox/{h.ids['AS']}",
    )

    deploy("X1", "legacy", "prod", [8], days=1)
    h.release("XS", "legacy", [commit("xs", ago(days=2))], created=ago(days=1, hours=-1))
    h.deploy(
        "XS",
        release="XS",
        service="legacy",
        environment="staging",
        state=states.FAILED,
        created=ago(days=1),
        deployed=None,
        finished=ago(days=1, minutes=-5),
    )
    return h


def _hours(value: float) -> timedelta:
    return timedelta(hours=value)


def _set_state(session: Session, deployment_id: int, state: str) -> None:
    row = session.get(Deployment, deployment_id)
    assert row is not None
    row.state = state
    session.add(row)


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def figures(row: Any) -> tuple[Any, ...]:
    return (
        row.deployments,
        row.failures,
        rounded(row.change_failure_rate),
        rounded(row.lead_time_median_hours),
        rounded(row.recovery_median_hours),
        row.recoveries,
    )


def test_dora_counts_the_configured_production_environments(db: Database, history: History) -> None:
    production = Production.of(dora_config())
    with db.read() as session:
        rows = dora.report(session, now=NOW, windows=(7,), production=production)
        one = dora.metrics(session, now=NOW, days=7, service="api", production=production)
    by_name = {row.service: row for row in rows}
    assert set(by_name) == {None, "web", "api", "legacy"}
    assert figures(by_name["web"]) == (3, 1, round(1 / 3, 6), 6.0, round(17 / 6, 6), 1)
    assert figures(by_name["api"]) == (2, 1, 0.5, 5.0, 1.0, 1)
    assert figures(by_name["legacy"]) == (1, 0, 0.0, 8.0, None, 0)
    overall = by_name[None]
    assert figures(overall) == (6, 2, round(1 / 3, 6), 6.0, round(23 / 12, 6), 2)
    assert rounded(overall.deploys_per_day) == round(6 / 7, 6)
    assert figures(one) == figures(by_name["api"])


def test_without_a_config_production_is_the_name(db: Database, history: History) -> None:
    with db.read() as session:
        overall = dora.metrics(session, now=NOW, days=7)
    assert figures(overall) == (1, 0, 0.0, 3.0, None, 0)  # WP


def test_the_terminal_table_and_the_digest_use_the_config(
    db: Database,
    history: History,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "releasebot.yaml"
    path.write_text(yaml.safe_dump(dora_config_data()))
    monkeypatch.setenv("RELEASEBOT_DATABASE_URL", database_url)
    argv = ["metrics", "--days", "7", "--at", NOW.isoformat(), "--config", str(path)]
    assert main(argv) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows["overall"][:2] == ["overall", "6"]
    assert rows["web"][:2] == ["web", "3"] and rows["api"][:2] == ["api", "2"]

    with db.read() as session:
        message = dora.digest(
            session, now=NOW, services=["api", "web"], production=Production.of(dora_config())
        )
    assert "6 production deployments" in message.text


def test_the_dashboard_series_counts_production_by_the_config(
    db: Database, history: History
) -> None:
    with db.read() as session:
        series = dashboard.dora_series(
            session, now=NOW, days=7, bucket="day", production=Production.of(dora_config())
        )
        by_name = dashboard.dora_series(session, now=NOW, days=7, bucket="day")
    assert (series.environment, series.deploys, series.failed) == ("production", 5, 1)
    # Lead times per release at its first production deploy: 2, 10, 6, 4, 8 -> 6h.
    assert series.lead_time_median == 6 * 3600
    assert (by_name.deploys, by_name.failed) == (1, 0)


# --- through the app: change events, the page, the evidence pack ----------------------------


def checkout_config(*, staging: bool | None, prod: bool | None) -> Config:
    """The example, with checkout's production environment named `prod` (GitHub still
    calls it production) and the given `production` keys."""
    data = example_config_data()
    staging_env, production_env = data["services"]["checkout"]["environments"]
    staging_env["auto_promote_to"] = "prod"
    production_env["name"] = "prod"
    production_env["on_verification_failure"] = "notify"
    for env, value in ((staging_env, staging), (production_env, prod)):
        if value is not None:
            env["production"] = value
    data["freezes"] = []
    return parse_config(data)


@pytest.fixture
def edge() -> FakeEdge:
    return FakeEdge()


@asynccontextmanager
async def running(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, config: Config, key: str
) -> AsyncIterator[Bot]:
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=edge.transport,
        config=config,
        environ={"PD_CHECKOUT_ROUTING_KEY": ROUTING_KEY},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": key}
    async with bot_factory(env=env, overrides=overrides) as bot:
        yield bot


async def deploy_and_fail(bot: Bot, edge: FakeEdge) -> Deployment:
    body = encode(deployment_status("success", sha=SHA_A, deployment_id=1))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()
    edge.health.queued = [503]
    await checks_tick(bot.runtime)
    await bot.send_outbox()
    with bot.runtime.db.read() as session:
        deployment = session.exec(select(Deployment).where(Deployment.sha == SHA_A)).one()
    assert (deployment.environment, deployment.state) == ("prod", "verification_failed")
    return deployment


async def pack_of(bot: Bot, deployment_id: int) -> dict[str, Any]:
    answer = await bot.http.get(f"/deployments/{deployment_id}/evidence.json")
    assert answer.status_code == 200, answer.text
    pack: dict[str, Any] = json.loads(answer.content)
    return pack


async def test_a_deploy_to_prod_sends_a_change_event_and_a_failure_pages_critical(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> None:
    config = checkout_config(staging=None, prod=None)
    async with running(bot_factory, clock, edge, config, app_private_key) as bot:
        deployment = await deploy_and_fail(bot, edge)
        pack = await pack_of(bot, deployment.id or 0)
    assert [c["payload"]["summary"] for c in edge.pagerduty.changes] == [
        f"Deployed checkout {SHA_A[:7]} to prod"
    ]
    assert edge.pagerduty.changes[0]["routing_key"] == ROUTING_KEY
    [trigger] = [e for e in edge.pagerduty.events if e["event_action"] == "trigger"]
    assert trigger["dedup_key"] == f"releasebot/checkout/prod/{deployment.id}"
    assert trigger["payload"]["severity"] == "critical"
    assert pack["production"]["reached"] is True
    assert pack["production"]["environments"] == ["prod"]
    assert pack["production"]["first_deployed_at"] == "2026-11-17T10:00:00.000000Z"
    assert [(d["environment"], d["production"]) for d in pack["deployments"]] == [("prod", True)]


async def test_prod_marked_not_production_sends_no_change_event_and_pages_as_error(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> None:
    config = checkout_config(staging=True, prod=False)
    assert config.production_environments_of("checkout") == ["staging"]
    async with running(bot_factory, clock, edge, config, app_private_key) as bot:
        deployment = await deploy_and_fail(bot, edge)
        pack = await pack_of(bot, deployment.id or 0)
        with bot.runtime.db.read() as session:
            stored = evidence.evidence_pack(
                session, release_id=deployment.release_id, config=config, generated_at=NOW
            )
    assert edge.pagerduty.changes == []
    [trigger] = [e for e in edge.pagerduty.events if e["event_action"] == "trigger"]
    assert trigger["payload"]["severity"] == "error"
    assert pack["production"] == {"reached": False, "environments": [], "first_deployed_at": None}
    assert stored["production"] == pack["production"]
    assert [(d["environment"], d["production"]) for d in pack["deployments"]] == [("prod", False)]


# --- risk inputs ----------------------------------------------------------------------------


def test_risk_inputs_take_production_from_the_config(db: Database, history: History) -> None:
    """Days since the service's last production deploy, created_at to created_at, of
    deployments that ran and did not fail: before W3, W1 (2d 1h30m; W2 never ran); before
    WS and WP, W3 (0d 22h30m, 1d 22h30m); before A2, none (A1 failed verification)."""
    config = dora_config()

    def inputs(session: Session, name: str) -> tuple[bool, float | None]:
        deployment = session.get(Deployment, history.ids[name])
        assert deployment is not None
        release = session.get(Release, deployment.release_id)
        assert release is not None
        found = assessment._inputs(session, config=config, deployment=deployment, release=release)
        days = found.days_since_last_production_deploy
        return found.is_production, None if days is None else round(days, 6)

    with db.read() as session:
        assert inputs(session, "W3") == (True, round(2 + 1 / 24 + 0.5 / 24, 6))
        assert inputs(session, "WS") == (False, round(1 - 1.5 / 24, 6))
        assert inputs(session, "WP") == (False, round(2 - 1.5 / 24, 6))
        assert inputs(session, "A2") == (True, None)
        assert inputs(session, "A2S")[0] is False
        assert inputs(session, "X1") == (True, None)
