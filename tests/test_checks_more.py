"""Prometheus range, Datadog metric and New Relic NRQL checks: each reads its platform's answer
(errors included), reduces it to one value, compares it with its threshold, and the thread
shows the value, the threshold and a link to the query; verification passes or fails by them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.app import Overrides
from bot.config import Config, parse_config
from bot.domain.errors import ConfigError
from bot.scheduling import checks_tick
from bot.store.tables import Deployment
from integrations.checks import VerifyRunner
from integrations.checks.datadog import DatadogCheckRunner
from integrations.checks.http import HttpCheckRunner
from integrations.checks.nrql import NrqlCheckRunner
from integrations.checks.prometheus import PrometheusCheckRunner
from integrations.checks.prometheus_range import PrometheusRangeCheckRunner
from integrations.sandbox.webapi import FakeSlackWebApi
from tests.conftest import BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.helpers import SHA_A, deployment_status, encode, example_config_data, fixture
from tests.helpers import github_headers as signed

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)
DD_API, DD_APP = "dd-api-key-123", "dd-app-key-456"
NR_KEY = "NRAK-USERKEY-789"
SECRETS = {"DD_API_KEY": DD_API, "DD_APP_KEY": DD_APP, "NEW_RELIC_API_KEY": NR_KEY}
MATRIX = fixture("prometheus", "query_range__matrix-docs.json")  # "up" of two targets
NRQL = (
    "SELECT percentile(duration, 99) FROM Transaction WHERE appName = 'checkout' "
    "SINCE 10 minutes ago"
)


class FakeMetrics:
    """Prometheus' query_range, Datadog's /api/v1/query and NerdGraph, each answering what
    the test sets, checking the auth headers as the real APIs do."""

    def __init__(self) -> None:
        self.prometheus: dict[str, Any] = MATRIX
        self.datadog_points: list[list[Any]] = [[1, 0.5], [2, None], [3, 1.5]]
        self.nrql_results: list[dict[str, Any]] = [{"percentile.duration": {"99": 0.25}}]
        self.requests: list[httpx.Request] = []

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/v1/query_range":
            return httpx.Response(200, json=self.prometheus)
        if request.url.host.startswith("api.") and request.url.path == "/api/v1/query":
            if request.headers.get("dd-api-key") != DD_API:
                return httpx.Response(403, json={"errors": ["Forbidden"]})
            if request.headers.get("dd-application-key") != DD_APP:
                return httpx.Response(403, json={"errors": ["Forbidden"]})
            series = [{"metric": "trace.errors", "pointlist": self.datadog_points}]
            return httpx.Response(
                200, json={"status": "ok", "res_type": "time_series", "series": series}
            )
        if request.url.path == "/graphql":
            if request.headers.get("api-key") != NR_KEY:
                return httpx.Response(401, json={"errors": [{"message": "Invalid API key"}]})
            results = {"data": {"actor": {"account": {"nrql": {"results": self.nrql_results}}}}}
            return httpx.Response(200, json=results)
        return httpx.Response(404)


def clock() -> FrozenClock:
    return FrozenClock(NOW)


def range_check(**settings: Any) -> dict[str, Any]:
    base = {"url": "http://127.0.0.1:9390", "query": "up", "window": "10m", "step": "15s"}
    return {"name": "up", "prometheus_range": {**base, **settings}, "at": ["0s"]}


def datadog_check(**settings: Any) -> dict[str, Any]:
    base = {
        "site": "datadoghq.com",
        "api_key_env": "DD_API_KEY",
        "app_key_env": "DD_APP_KEY",
        "query": "sum:trace.errors{service:checkout}",
        "window": "5m",
    }
    return {"name": "errors", "datadog": {**base, **settings}, "at": ["0s"]}


def nrql_check(**settings: Any) -> dict[str, Any]:
    base = {"api_key_env": "NEW_RELIC_API_KEY", "account_id": 1234567, "query": NRQL}
    return {"name": "p99", "nrql": {**base, **settings}, "at": ["0s"]}


def runners(fake: FakeMetrics, secrets: dict[str, str] | None = None) -> VerifyRunner:
    client = httpx.AsyncClient(transport=fake.transport)
    lookup: Callable[[str], str | None] = (SECRETS if secrets is None else secrets).get
    return VerifyRunner(
        http=HttpCheckRunner(client),
        prometheus=PrometheusCheckRunner(client),
        more={
            "prometheus_range": PrometheusRangeCheckRunner(client, clock=clock()),
            "datadog": DatadogCheckRunner(client, secrets=lookup, clock=clock()),
            "nrql": NrqlCheckRunner(client, secrets=lookup),
        },
    )


# --- Prometheus range queries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "reduce,passed,summary",
    [
        ("max", True, "max over 10m = 1 >= min 1"),
        ("last", True, "last over 10m = 1 >= min 1"),
        ("avg", False, "avg over 10m = 0.333333 < min 1"),
    ],
)
async def test_the_documented_matrix_is_reduced_per_series_and_the_worst_compared(
    reduce: str, passed: bool, summary: str
) -> None:
    fake = FakeMetrics()
    result = await runners(fake).run(range_check(reduce=reduce, min=1))
    assert (result.passed, result.summary) == (passed, summary)
    assert result.evidence["series"] == 2
    [request] = fake.requests
    assert request.url.path == "/api/v1/query_range"
    params = request.url.params
    assert params["query"] == "up" and params["step"] == "15"
    assert float(params["end"]) == NOW.timestamp()
    assert float(params["end"]) - float(params["start"]) == 600
    link = result.evidence["link"]
    assert link.startswith("http://127.0.0.1:9390/graph?g0.expr=up")
    assert "g0.range_input=10m" in link


async def test_a_range_query_error_and_an_empty_window_fail_plainly() -> None:
    fake = FakeMetrics()
    fake.prometheus = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    failed = await runners(fake).run(range_check(max=1))
    assert (failed.passed, failed.summary) == (False, "the query is invalid: parse error at char 3")
    fake.prometheus = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    empty = await runners(fake).run(range_check(max=1))
    assert (empty.passed, empty.summary) == (
        False,
        "no data: the query returned no samples in the window",
    )


# --- Datadog metric queries -----------------------------------------------------------------


async def test_a_datadog_query_sends_both_keys_and_its_window() -> None:
    fake = FakeMetrics()
    result = await runners(fake).run(datadog_check(max=2))
    assert (result.passed, result.summary) == (True, "max over 5m = 1.5 <= max 2")
    [request] = fake.requests
    assert str(request.url).startswith("https://api.datadoghq.com/api/v1/query?")
    assert request.headers["dd-api-key"] == DD_API
    assert request.headers["dd-application-key"] == DD_APP
    params = request.url.params
    assert int(params["to"]) == int(NOW.timestamp())
    assert int(params["to"]) - int(params["from"]) == 300
    assert params["query"] == "sum:trace.errors{service:checkout}"
    assert result.evidence["link"].startswith("https://app.datadoghq.com/metric/explorer?")
    avg = await runners(fake).run(datadog_check(max=0.9, reduce="avg"))
    assert (avg.passed, avg.summary) == (False, "avg over 5m = 1 > max 0.9")


async def test_datadog_refusals_and_missing_keys_fail_without_showing_a_key() -> None:
    fake = FakeMetrics()
    wrong = await runners(fake, {**SECRETS, "DD_APP_KEY": "revoked"}).run(datadog_check(max=2))
    assert (wrong.passed, wrong.summary) == (False, "Datadog answered HTTP 403: Forbidden")
    unset = await runners(fake, {}).run(datadog_check(max=2))
    assert unset.summary == "DD_API_KEY and DD_APP_KEY not set: cannot query Datadog"
    assert DD_API not in json.dumps(wrong.evidence) and DD_APP not in json.dumps(wrong.evidence)


# --- New Relic NRQL ----------------------------------------------------------------------------


async def test_an_nrql_query_goes_through_nerdgraph_and_reads_the_first_number() -> None:
    fake = FakeMetrics()
    fake.nrql_results = [{"count": 12, "average.duration": 0.4}]
    result = await runners(fake).run(nrql_check(max=0.5, field="average.duration"))
    assert (result.passed, result.summary) == (True, "average.duration = 0.4 <= max 0.5")
    [request] = fake.requests
    assert str(request.url) == "https://api.newrelic.com/graphql"
    assert request.headers["api-key"] == NR_KEY
    body = json.loads(request.content)
    assert "actor { account(id: $accountId) { nrql(query: $nrql) { results } } }" in body["query"]
    assert body["variables"] == {"accountId": 1234567, "nrql": NRQL}
    first = await runners(fake).run(nrql_check(max=10, region="eu"))
    assert (first.passed, first.summary) == (False, "count = 12 > max 10")
    assert str(fake.requests[-1].url) == "https://api.eu.newrelic.com/graphql"
    assert first.evidence["link"].startswith("https://one.eu.newrelic.com/")


async def test_nrql_errors_and_empty_results_fail() -> None:
    fake = FakeMetrics()
    refused = await runners(fake, {"NEW_RELIC_API_KEY": "NRAK-OLD"}).run(nrql_check(max=1))
    assert refused.summary == "New Relic answered HTTP 401: Invalid API key"
    fake.nrql_results = []
    empty = await runners(fake).run(nrql_check(max=1))
    assert empty.summary == "no data: the NRQL query returned no results"


def test_the_config_validates_the_new_checks_by_yaml_path() -> None:
    data = example_config_data()
    verify = data["services"]["checkout"]["environments"][1]["verify"]
    verify[1] = {
        "name": "p99",
        "prometheus_range": {"url": "http://p", "query": "x", "reduce": "median", "max": 1},
        "at": ["1m"],
    }
    verify.append(
        {
            "name": "dd",
            "datadog": {"api_key_env": "DD_API_KEY", "query": "q", "max": 1},
            "at": ["1m"],
        }
    )
    verify.append(
        {"name": "nr", "nrql": {"api_key_env": "K", "account_id": 1, "query": "q"}, "at": ["1m"]}
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    where = "services.checkout.environments[1].verify"
    problems = caught.value.problems
    assert any(p.startswith(f"{where}[1].prometheus_range.reduce") for p in problems), problems
    assert any(p.startswith(f"{where}[2].datadog.app_key_env") for p in problems), problems
    assert any(p.startswith(f"{where}[3].nrql") and "set max, min or both" in p for p in problems)


# --- through the app -----------------------------------------------------------------------


def metric_checks_config(*, datadog_max: float) -> Config:
    data = example_config_data()
    production = data["services"]["checkout"]["environments"][1]
    production["verify"] = [
        range_check(min=1, reduce="max"),
        {**datadog_check(max=datadog_max), "at": ["1m"]},  # after the other two
        nrql_check(max=0.3),
    ]
    production["on_verification_failure"] = "notify"
    return parse_config(data)


def thread(slack: FakeSlackWebApi) -> list[str]:
    """Every line of the thread (lines queued while a reply waited share that reply)."""
    channel = "#checkout-deploys"
    message = next(m for m in slack.messages(channel) if SHA_A[:7] in m["text"])
    replies = slack.thread(channel, message["ts"])[1:]
    return [line for reply in replies for line in str(reply["text"]).split("\n")]


@pytest.mark.parametrize("datadog_max,verdict", [(2.0, "verified"), (1.0, "verification_failed")])
async def test_a_verification_with_metric_checks_shows_value_threshold_and_link(
    bot_factory: BotFactory,
    slack: FakeSlackWebApi,
    app_private_key: str,
    datadog_max: float,
    verdict: str,
) -> None:
    fake, edge, frozen = FakeMetrics(), FakeEdge(), clock()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.port == 9390 or request.url.host in (
            "api.datadoghq.com",
            "api.newrelic.com",
        ):
            return fake.handle(request)
        return edge.transport.handle_request(request)

    overrides = Overrides(
        clock=frozen,
        start_scheduler=False,
        run_outbox_worker=False,
        http_transport=httpx.MockTransport(route),
        config=metric_checks_config(datadog_max=datadog_max),
        environ={**SECRETS, "PD_CHECKOUT_ROUTING_KEY": "pd-key"},
    )
    env = {"GITHUB_APP_ID": "1234", "GITHUB_APP_PRIVATE_KEY": app_private_key}
    async with bot_factory(env=env, overrides=overrides) as bot:
        body = encode(deployment_status("success", sha=SHA_A, deployment_id=1))
        answer = await bot.post("/webhooks/github", body, signed("deployment_status", body))
        assert answer.status_code == 202
        await bot.send_outbox()
        assert await checks_tick(bot.runtime) == 2
        await bot.send_outbox()
        frozen.advance(minutes=1)
        assert await checks_tick(bot.runtime) == 1
        await bot.send_outbox()
        with bot.runtime.db.read() as session:
            state = session.exec(select(Deployment.state)).one()
    assert state == verdict
    lines = thread(slack)
    up = next(line for line in lines if "*up*" in line)
    assert up.startswith(
        ":white_check_mark: *up*: max over 10m = 1 &gt;= min 1 · <http://127.0.0.1:9390/graph?"
    )
    assert up.endswith("|query>")
    errors = next(line for line in lines if "*errors*" in line)
    if verdict == "verified":
        assert errors.startswith(
            ":white_check_mark: *errors*: max over 5m = 1.5 &lt;= max 2 · <https://app.datadoghq.com/metric/explorer?"
        )
    else:
        assert errors.startswith(
            ":x: *errors*: max over 5m = 1.5 &gt; max 1 · <https://app.datadoghq.com/"
        )
        assert any("verification failed" in line and "*errors*" in line for line in lines)
    p99 = next(line for line in lines if "*p99*" in line)
    assert p99.startswith(
        ":white_check_mark: *p99*: percentile.duration = 0.25 &lt;= max 0.3 · <https://one.newrelic.com/"
    )
