"""The alert rules and the Grafana dashboard use only metrics releasebot exports, and the
metrics they need are exported: check runs, check lag, the scheduler's last look, readiness.

(promtool checks the PromQL itself and runs the alerts' unit tests: .ci/promtool-check.)
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yaml

from bot import migrate
from bot.app import Overrides
from bot.metrics import Metrics
from bot.scheduling import checks_tick
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import REPO_ROOT, SHA_A, deployment_status, encode, github_headers

MONITORING = REPO_ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\breleasebot_[a-zA-Z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_names() -> set[str]:
    """Every series name the registry can expose, whether or not it has samples yet."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8")
    )
    return data


def dashboard_queries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating query."""
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["definition"]


def test_the_registry_names_are_what_the_exposition_shows() -> None:
    names = exported_names()
    assert {
        "releasebot_webhooks_total",
        "releasebot_outbox_dead",
        "releasebot_http_request_duration_seconds_bucket",
        "releasebot_check_runs_total",
        "releasebot_check_lag_seconds_bucket",
        "releasebot_checks_last_tick_timestamp_seconds",
        "releasebot_ready",
    } <= names
    assert "releasebot_outbox_dead_total" not in names


def test_every_alert_uses_only_exported_metrics() -> None:
    names = exported_names()
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "ReleasebotOutboxDeadRows",
        "ReleasebotWebhooksRefused",
        "ReleasebotChecksNotRunning",
        "ReleasebotCheckDrift",
        "ReleasebotSlackAuthErrors",
        "ReleasebotSlackApiErrors",
        "ReleasebotNotReady",
    }
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used, f"{rule['alert']} uses no releasebot metric"
        assert used <= names, f"{rule['alert']} uses unknown metrics {sorted(used - names)}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    names = exported_names()
    data = dashboard()
    queries = list(dashboard_queries(data))
    assert len(queries) >= 10
    for where, expr in queries:
        used = set(METRIC.findall(expr))
        assert used, f"{where}: {expr} uses no releasebot metric"
        assert used <= names, f"{where} uses unknown metrics {sorted(used - names)}"
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in data["panels"]).lower()
    for topic in ("webhook", "latency", "backlog", "dead", "check runs", "slack"):
        assert topic in titles


def test_the_operations_guide_explains_every_alert() -> None:
    guide = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for rule in alert_rules():
        assert f"### {rule['alert']}" in guide
    assert "RELEASEBOT_LOG_FORMAT" in guide and "grafana-dashboard.json" in guide


# --- the metrics the alerts need ---------------------------------------------------------


@pytest.fixture
async def checked_bot(
    bot_factory: BotFactory, clock: FrozenClock, app_private_key: str
) -> AsyncIterator[Bot]:
    edge = FakeEdge()
    overrides = Overrides(
        clock=clock,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=edge.transport,
        environ={"PD_CHECKOUT_ROUTING_KEY": "pd-routing-key"},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as running:
        yield running


async def test_check_runs_lag_and_the_last_look_are_exported(
    checked_bot: Bot, clock: FrozenClock
) -> None:
    bot = checked_bot
    body = encode(deployment_status("success", sha=SHA_A, deployment_id=1))
    answer = await bot.post("/webhooks/github", body, github_headers("deployment_status", body))
    assert answer.status_code == 202
    await bot.send_outbox()
    clock.advance(seconds=3)  # the first health check was due at once: it starts 3 s late
    assert await checks_tick(bot.runtime) == 1
    text = (await bot.http.get("/metrics")).text
    assert re.search(r'releasebot_check_runs_total\{kind="\w+",outcome="passed"\} 1\.0', text)
    assert "releasebot_check_lag_seconds_count 1.0" in text
    assert 'releasebot_check_lag_seconds_bucket{le="2.5"} 0.0' in text
    assert 'releasebot_check_lag_seconds_bucket{le="5.0"} 1.0' in text
    [last_look] = re.findall(r"^releasebot_checks_last_tick_timestamp_seconds (\S+)$", text, re.M)
    assert float(last_look) == clock.now().timestamp()


async def test_readiness_is_exported_and_metrics_answer_while_not_ready(bot: Bot) -> None:
    assert "releasebot_ready 1.0" in (await bot.http.get("/metrics")).text
    migrate.downgrade(bot.runtime.db.engine, "base")
    answer = await bot.http.get("/metrics")
    assert answer.status_code == 200
    assert "releasebot_ready 0.0" in answer.text
