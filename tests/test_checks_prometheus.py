"""PrometheusCheckRunner against a MockTransport answering with Prometheus' own envelopes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import VerifyCheck
from bot.ports import CheckResult
from integrations.checks.prometheus import NO_DATA, PrometheusCheckRunner
from integrations.http import make_client

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"
URL = "http://127.0.0.1:9390"
QUERY = (
    'sum(rate(http_requests_total{job="checkout",code=~"5.."}[5m])) '
    '/ sum(rate(http_requests_total{job="checkout"}[5m]))'
)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def prom_check(
    max: float | None = None, min: float | None = None, *, url: str = URL, query: str = QUERY
) -> dict[str, Any]:
    """A check dict exactly as the config gives it: `VerifyCheck.model_dump(mode="json")`."""
    section: dict[str, Any] = {"url": url, "query": query}
    if max is not None:
        section["max"] = max
    if min is not None:
        section["min"] = min
    check = VerifyCheck.model_validate({"name": "error-rate", "prometheus": section, "at": ["1m"]})
    return check.model_dump(mode="json")


def vector(*values: str, labels: list[dict[str, str]] | None = None) -> dict[str, Any]:
    metrics = labels or [{"job": "checkout", "instance": f"10.0.0.{i}:8080"} for i in range(9)]
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": metrics[i], "value": [1767436620.5, value]}
                for i, value in enumerate(values)
            ],
        },
    }


def scalar(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "scalar", "result": [1767436620, value]}}


def error(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "error": message}


STATUS_OF = {
    "bad_data": 400,
    "execution": 422,
    "timeout": 503,
    "canceled": 499,
    "internal": 500,
    "not_found": 404,
    "unavailable": 503,
}


class FakePrometheus:
    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer


Serve = Callable[..., tuple[PrometheusCheckRunner, FakePrometheus]]


@pytest.fixture
async def serve() -> Any:
    runners: list[PrometheusCheckRunner] = []

    def make(body: Any = None, status: int = 200, **kwargs: Any) -> tuple[Any, FakePrometheus]:
        if body is not None:
            kwargs["json"] = body
        fake = FakePrometheus(httpx.Response(status, **kwargs))
        runner = PrometheusCheckRunner(make_client("", transport=httpx.MockTransport(fake.handler)))
        runners.append(runner)
        return runner, fake

    yield make
    for runner in runners:
        await runner.aclose()


async def test_sends_an_instant_query_to_the_checks_server(serve: Serve) -> None:
    runner, fake = serve(vector("0.004"))
    result = await runner.run(prom_check(max=0.01, url=URL + "/"))
    (request,) = fake.requests
    assert request.method == "GET"
    assert request.url.path == "/api/v1/query"
    assert request.url.host == "127.0.0.1" and request.url.port == 9390
    assert request.url.params["query"] == QUERY
    assert result == CheckResult(
        passed=True,
        summary="error-rate 0.004 <= max 0.01",
        evidence={
            "url": URL,
            "query": QUERY,
            "max": 0.01,
            "status_code": 200,
            "resultType": "vector",
            "series": 1,
            "value": 0.004,
        },
    )


async def test_above_max_fails(serve: Serve) -> None:
    runner, _ = serve(vector("0.02"))
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary == "error-rate 0.02 > max 0.01"
    assert result.evidence["value"] == 0.02


async def test_equal_to_the_threshold_passes(serve: Serve) -> None:
    runner, _ = serve(vector("0.01"))
    assert (await runner.run(prom_check(max=0.01))).passed
    assert (await runner.run(prom_check(min=0.01))).passed


async def test_min_threshold(serve: Serve) -> None:
    runner, _ = serve(scalar("42"))
    good = await runner.run(prom_check(min=10))
    bad = await runner.run(prom_check(min=50))
    assert good.passed and good.summary == "error-rate 42 >= min 10"
    assert not bad.passed and bad.summary == "error-rate 42 < min 50"


async def test_min_and_max_together(serve: Serve) -> None:
    runner, _ = serve(vector("5"))
    ok = await runner.run(prom_check(min=1, max=10))
    assert ok.passed and ok.summary == "error-rate 5 within min 1 and max 10"
    assert not (await runner.run(prom_check(min=6, max=10))).passed
    assert not (await runner.run(prom_check(min=1, max=4))).passed


async def test_several_series_max_threshold_uses_the_largest(serve: Serve) -> None:
    runner, _ = serve(vector("0.001", "0.05", "0.002"))
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary == (
        'error-rate 0.05 > max 0.01 ({instance="10.0.0.1:8080",job="checkout"}, worst of 3 series)'
    )
    assert result.evidence["worst_series"] == {"job": "checkout", "instance": "10.0.0.1:8080"}
    assert result.evidence["max_value"] == 0.05 and result.evidence["min_value"] == 0.001
    assert result.evidence["series"] == 3


async def test_several_series_min_threshold_uses_the_smallest(serve: Serve) -> None:
    runner, _ = serve(vector("0.99", "0.5", "0.999"))
    result = await runner.run(prom_check(min=0.9))
    assert not result.passed
    assert result.summary.startswith("error-rate 0.5 < min 0.9 (")
    assert result.evidence["value"] == 0.5
    passing = await runner.run(prom_check(min=0.4))
    assert passing.passed
    assert passing.summary == "error-rate 0.5 >= min 0.4 (worst of 3 series)"


async def test_vector_docs_fixture(serve: Serve) -> None:
    runner, _ = serve(fixture("query__vector-docs.json"))
    up = await runner.run(prom_check(min=1, query="up"))
    assert not up.passed  # the node exporter target is down
    assert up.summary == (
        'error-rate 0 < min 1 (up{instance="localhost:9100",job="node"}, worst of 2 series)'
    )
    assert (await runner.run(prom_check(max=1, query="up"))).passed


async def test_vector_openapi_fixture(serve: Serve) -> None:
    runner, _ = serve(fixture("query__vector-openapi-example.json"))
    result = await runner.run(prom_check(min=1, query="up"))
    assert result.passed
    assert result.summary == "error-rate 1 >= min 1 (worst of 2 series)"
    assert result.evidence["resultType"] == "vector"


async def test_scalar_fixture(serve: Serve) -> None:
    runner, _ = serve(fixture("query__scalar-openapi-example.json"))
    result = await runner.run(prom_check(max=100, query="scalar(42)"))
    assert result.passed
    assert result.summary == "error-rate 42 <= max 100"
    assert result.evidence["resultType"] == "scalar"
    assert result.evidence["value"] == 42.0


@pytest.mark.parametrize(
    "name", ["query__matrix-openapi-example.json", "query_range__matrix-docs.json"]
)
async def test_matrix_fixtures_fail_with_a_hint(serve: Serve, name: str) -> None:
    runner, _ = serve(fixture(name))
    result = await runner.run(prom_check(max=1, query="up[5m]"))
    assert not result.passed
    assert result.summary.startswith("the query returns a range vector (matrix)")
    assert result.evidence["resultType"] == "matrix"


async def test_native_histogram_fixture_fails_with_a_hint(serve: Serve) -> None:
    runner, _ = serve(fixture("query__vector-native-histogram-openapi-example.json"))
    result = await runner.run(prom_check(max=1, query="http_request_duration_seconds"))
    assert not result.passed
    assert "native histograms" in result.summary
    assert "histogram_quantile()" in result.summary


async def test_error_fixture(serve: Serve) -> None:
    runner, _ = serve(fixture("query__error-openapi-example.json"), status=500)
    result = await runner.run(prom_check(max=1))
    assert not result.passed
    assert result.summary == "Prometheus had an internal error: TSDB not ready"
    assert result.evidence["errorType"] == "internal"
    assert result.evidence["error"] == "TSDB not ready"
    assert result.evidence["status_code"] == 500


async def test_empty_vector_is_no_data(serve: Serve) -> None:
    runner, _ = serve(vector())
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary == NO_DATA == "no data: the query returned an empty result"
    assert result.evidence["series"] == 0
    assert "value" not in result.evidence


@pytest.mark.parametrize(
    ("body", "summary"),
    [
        (vector("NaN"), "error-rate is NaN (usually 0/0: no traffic in the query's window)"),
        (vector("+Inf"), "error-rate is +Inf (usually a division by zero)"),
        (vector("-Inf"), "error-rate is -Inf (usually a division by zero)"),
        (scalar("NaN"), "error-rate is NaN (usually 0/0: no traffic in the query's window)"),
        (
            vector("0.001", "NaN"),
            'error-rate is NaN for {instance="10.0.0.1:8080",job="checkout"} '
            "(usually 0/0: no traffic in the query's window)",
        ),
    ],
)
async def test_nan_and_infinities_fail(serve: Serve, body: dict[str, Any], summary: str) -> None:
    runner, _ = serve(body)
    for check in (prom_check(max=0.01), prom_check(min=0.0)):
        result = await runner.run(check)
        assert not result.passed
        assert result.summary == summary
        json.dumps(result.evidence)  # the evidence stays JSON (no float NaN)


@pytest.mark.parametrize(
    ("error_type", "message", "summary"),
    [
        (
            "bad_data",
            'invalid parameter "query": 1:5: parse error: unexpected end of input',
            'the query is invalid: invalid parameter "query": 1:5: parse error: '
            "unexpected end of input",
        ),
        (
            "execution",
            "found duplicate series for the match group",
            "the query failed: found duplicate series for the match group",
        ),
        (
            "timeout",
            "query timed out in expression evaluation",
            "Prometheus timed out running the query",
        ),
        ("canceled", "context canceled", "Prometheus canceled the query"),
        ("internal", "TSDB not ready", "Prometheus had an internal error: TSDB not ready"),
        ("not_found", "no such thing", "Prometheus says not found: no such thing"),
        ("unavailable", "shutting down", "Prometheus is unavailable: shutting down"),
        ("surprise", "odd", "Prometheus returned an error (surprise): odd"),
    ],
)
async def test_each_error_type_reads_plainly(
    serve: Serve, error_type: str, message: str, summary: str
) -> None:
    runner, _ = serve(error(error_type, message), status=STATUS_OF.get(error_type, 500))
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary == summary
    assert result.evidence["errorType"] == error_type
    assert result.evidence["error"] == message


async def test_warnings_are_kept_in_the_evidence(serve: Serve) -> None:
    body = vector("0.001") | {"warnings": ["PromQL info: metric might not be a counter"]}
    runner, _ = serve(body)
    result = await runner.run(prom_check(max=0.01))
    assert result.passed
    assert result.evidence["warnings"] == ["PromQL info: metric might not be a counter"]


async def test_5xx_without_an_envelope_fails_with_the_status(serve: Serve) -> None:
    runner, _ = serve(status=502, text="<html>Bad Gateway</html>")
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary == "Prometheus answered HTTP 502 Bad Gateway"
    assert result.evidence["error"] == "<html>Bad Gateway</html>"
    assert result.evidence["status_code"] == 502


async def test_404_hints_at_the_url(serve: Serve) -> None:
    runner, _ = serve(status=404, text="404 page not found")
    result = await runner.run(prom_check(max=0.01))
    assert result.summary == (
        "Prometheus answered HTTP 404 Not Found (is the url the Prometheus server's base URL?)"
    )


async def test_a_200_that_is_not_prometheus(serve: Serve) -> None:
    runner, _ = serve(status=200, text="<html>login</html>")
    result = await runner.run(prom_check(max=0.01))
    assert not result.passed
    assert result.summary.startswith("the answer is not a Prometheus API response")


async def test_redirect_is_reported(serve: Serve) -> None:
    runner, _ = serve(status=302, headers={"Location": "https://sso.example.com/login?next=x"})
    result = await runner.run(prom_check(max=0.01))
    assert (
        result.summary
        == "Prometheus answered HTTP 302 (redirects to https://sso.example.com/login)"
    )


@pytest.mark.parametrize(
    ("exc", "summary"),
    [
        (
            httpx.ConnectError("All connection attempts failed"),
            "could not reach Prometheus at http://127.0.0.1:9390: could not connect: "
            "All connection attempts failed",
        ),
        (
            httpx.ReadTimeout("timed out"),
            "could not reach Prometheus at http://127.0.0.1:9390: timed out",
        ),
    ],
)
async def test_network_errors_fail_the_check(exc: Exception, summary: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    runner = PrometheusCheckRunner(make_client("", transport=httpx.MockTransport(handler)))
    result = await runner.run(prom_check(max=0.01))
    await runner.aclose()
    assert not result.passed
    assert result.summary == summary
    assert result.evidence["error"] == summary


async def test_credentials_in_the_url_stay_out_of_the_result(serve: Serve) -> None:
    runner, fake = serve(vector("0.001"))
    result = await runner.run(prom_check(max=0.01, url="http://bot:pa55word@127.0.0.1:9390"))
    assert result.passed
    assert result.evidence["url"] == URL
    assert "pa55word" not in repr(result)
    assert fake.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ({"name": "x", "prometheus": {"url": URL, "query": "up"}}, "set prometheus.max"),
        ({"name": "x", "prometheus": {"url": URL, "query": "", "max": 1}}, "prometheus.query"),
        (
            {"name": "x", "prometheus": {"url": "tcp://x", "query": "up", "max": 1}},
            "prometheus.url",
        ),
        ({"name": "x", "prometheus": {"url": URL, "query": "up", "max": "1%"}}, "threshold '1%'"),
        ({"name": "x", "prometheus": None}, "no prometheus section"),
    ],
)
async def test_a_misconfigured_check_fails_without_a_request(
    serve: Serve, check: dict[str, Any], problem: str
) -> None:
    runner, fake = serve(vector("1"))
    result = await runner.run(check)
    assert not result.passed
    assert result.summary.startswith(f"the check is misconfigured: {problem}")
    assert fake.requests == []
