"""HttpCheckRunner against a real Starlette app on loopback (and a closed port)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.config import VerifyCheck
from bot.ports import CheckResult, CheckRunner
from integrations.checks import VerifyRunner, duration_seconds
from integrations.checks.http import MAX_BODY_BYTES, HttpCheckRunner
from integrations.checks.prometheus import PrometheusCheckRunner
from integrations.http import make_client
from tests.servers import serve_in_thread

HEALTH = {"status": "ok", "checks": {"db": {"status": "up", "latency_ms": 3}}, "items": [1, 2]}


async def healthz(request: Request) -> Response:
    return JSONResponse(HEALTH)


async def broken(request: Request) -> Response:
    return PlainTextResponse("database is down", status_code=500)


async def text(request: Request) -> Response:
    return PlainTextResponse("all systems operational")


async def huge(request: Request) -> Response:
    return PlainTextResponse("x" * (MAX_BODY_BYTES + 10_000) + "needle")


async def moved(request: Request) -> Response:
    return RedirectResponse("/healthz", status_code=301)


async def hang(request: Request) -> Response:
    """Never answers: waits for an event nobody sets, until the client hangs up."""

    async def hangup() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    never = asyncio.Event()
    waiting = [asyncio.ensure_future(never.wait()), asyncio.ensure_future(hangup())]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiting:
            task.cancel()
    return PlainTextResponse("too late")


APP = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/broken", broken),
        Route("/text", text),
        Route("/huge", huge),
        Route("/moved", moved),
        Route("/hang", hang),
    ]
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(APP) as url:
        yield url


def http_check(url: str, **options: Any) -> dict[str, Any]:
    """A check dict exactly as the config gives it: `VerifyCheck.model_dump(mode="json")`."""
    check = VerifyCheck.model_validate(
        {"name": "health", "http": {"url": url, **options}, "at": ["0s"]}
    )
    return check.model_dump(mode="json")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def run(check: dict[str, Any], runner: HttpCheckRunner | None = None) -> CheckResult:
    return await (runner or HttpCheckRunner()).run(check)


async def test_200_passes_with_measured_latency(base_url: str) -> None:
    ticks = iter([10.0, 10.043])
    runner = HttpCheckRunner(monotonic=lambda: next(ticks))
    result = await runner.run(http_check(f"{base_url}/healthz", timeout="2s"))
    assert result == CheckResult(
        passed=True,
        summary="HTTP 200 in 43 ms",
        evidence={
            "url": f"{base_url}/healthz",
            "expect_status": 200,
            "status_code": 200,
            "latency_ms": 43,
            "body_excerpt": result.evidence["body_excerpt"],
            "body_truncated": False,
        },
    )
    assert '"status":"ok"' in result.evidence["body_excerpt"]


async def test_real_clock_latency_is_a_small_number(base_url: str) -> None:
    result = await run(http_check(f"{base_url}/healthz"))
    assert result.passed
    assert 0 <= result.evidence["latency_ms"] < 5000
    assert result.summary == f"HTTP 200 in {result.evidence['latency_ms']} ms"


async def test_500_fails_with_status_and_body(base_url: str) -> None:
    ticks = iter([0.0, 0.012])
    result = await HttpCheckRunner(monotonic=lambda: next(ticks)).run(
        http_check(f"{base_url}/broken")
    )
    assert not result.passed
    assert result.summary == "expected HTTP 200, got 500 in 12 ms"
    assert result.evidence["status_code"] == 500
    assert result.evidence["body_excerpt"] == "database is down"


async def test_expect_status_other_than_200(base_url: str) -> None:
    result = await run(http_check(f"{base_url}/broken", expect_status=500))
    assert result.passed
    assert result.summary.startswith("HTTP 500 in ")


async def test_redirect_is_not_followed(base_url: str) -> None:
    result = await run(http_check(f"{base_url}/moved"))
    assert not result.passed
    assert result.summary.startswith("expected HTTP 200, got 301 in ")
    assert result.summary.endswith("(redirects to /healthz)")


async def test_body_contains(base_url: str) -> None:
    good = await run(http_check(f"{base_url}/text", body_contains="operational"))
    bad = await run(http_check(f"{base_url}/text", body_contains="degraded"))
    assert good.passed
    assert not bad.passed
    assert bad.summary.endswith('but the body does not contain "degraded"')
    assert bad.evidence["status_code"] == 200


async def test_body_is_read_only_up_to_64_kib(base_url: str) -> None:
    result = await run(http_check(f"{base_url}/huge", body_contains="needle"))
    assert not result.passed
    assert result.evidence["body_truncated"] is True
    assert "the first 64 KiB of the body does not contain" in result.summary
    assert len(result.evidence["body_excerpt"]) == 500


@pytest.mark.parametrize(
    ("field", "equals", "passed", "summary_end"),
    [
        ("status", None, True, "ms"),
        ("status", "ok", True, 'ms, status is "ok"'),
        ("checks.db.status", "up", True, 'checks.db.status is "up"'),
        ("checks.db.latency_ms", 3, True, "checks.db.latency_ms is 3"),
        ("checks.db.latency_ms", 3.0, True, "checks.db.latency_ms is 3"),
        ("items.1", 2, True, "items.1 is 2"),
        ("status", "down", False, 'but status is "ok", expected "down"'),
        ("checks.db.latency_ms", True, False, "but checks.db.latency_ms is 3, expected true"),
        ("checks.cache", None, False, "but the JSON has no field checks.cache"),
        ("items.5", None, False, "but the JSON has no field items.5"),
    ],
)
async def test_json_field_and_json_equals(
    base_url: str, field: str, equals: Any, passed: bool, summary_end: str
) -> None:
    options: dict[str, Any] = {"json_field": field}
    if equals is not None:
        options["json_equals"] = equals
    result = await run(http_check(f"{base_url}/healthz", **options))
    assert result.passed is passed
    assert result.summary.endswith(summary_end), result.summary


async def test_json_field_on_a_body_that_is_not_json(base_url: str) -> None:
    result = await run(http_check(f"{base_url}/text", json_field="status"))
    assert not result.passed
    assert result.summary.endswith("but the body is not JSON")


async def test_timeout_fails_after_the_configured_time(base_url: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run(http_check(f"{base_url}/hang", timeout="200ms"))
    elapsed = loop.time() - started
    assert not result.passed
    assert result.summary == "timed out after 0.2 s"
    assert result.evidence["error"] == "timed out after 0.2 s"
    assert "status_code" not in result.evidence
    assert 0.15 <= elapsed < 3.0


async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}/healthz"
    result = await run(http_check(url, timeout="2s"))
    assert not result.passed
    assert result.summary == "connection refused"
    assert result.evidence["url"] == url


async def test_shared_client_is_reused_and_left_open(base_url: str) -> None:
    async with make_client("") as client:
        runner = HttpCheckRunner(client)
        first = await runner.run(http_check(f"{base_url}/healthz"))
        second = await runner.run(http_check(f"{base_url}/broken"))
        assert first.passed and not second.passed
        assert not client.is_closed


async def test_client_factory_is_called_per_run_and_closed(base_url: str) -> None:
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(make_client(""))
        return made[-1]

    runner = HttpCheckRunner(factory)
    await runner.run(http_check(f"{base_url}/healthz"))
    await runner.run(http_check(f"{base_url}/healthz"))
    assert len(made) == 2
    assert all(client.is_closed for client in made)


async def test_credentials_and_query_stay_out_of_evidence(base_url: str) -> None:
    host = base_url.removeprefix("http://")
    result = await run(http_check(f"http://user:s3cret@{host}/healthz?token=abc"))
    assert result.passed
    assert result.evidence["url"] == f"{base_url}/healthz"
    assert "s3cret" not in repr(result) and "abc" not in result.evidence["url"]


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ({"name": "x", "http": {"expect_status": 200}}, "http.url None is not an http(s) URL"),
        ({"name": "x", "http": {"url": "ftp://h/x"}}, "http.url 'ftp://h/x' is not an http(s) URL"),
        ({"name": "x", "http": {"url": "http://h/", "timeout": "soon"}}, "http.timeout"),
        ({"name": "x", "http": None}, "no http section"),
    ],
)
async def test_a_misconfigured_check_fails_without_raising(
    check: dict[str, Any], problem: str
) -> None:
    result = await run(check)
    assert not result.passed
    assert result.summary.startswith(f"the check is misconfigured: {problem}")


async def test_timeouts_in_every_shape() -> None:
    assert duration_seconds("2s") == 2.0
    assert duration_seconds("500ms") == 0.5
    assert duration_seconds(timedelta(seconds=3)) == 3.0
    assert duration_seconds("PT2S") == 2.0
    assert duration_seconds(1.5) == 1.5
    for bad in ("soon", 0, "0s", None, True):
        with pytest.raises(ValueError):
            duration_seconds(bad)


async def test_model_dump_in_python_mode_works_too(base_url: str) -> None:
    check = VerifyCheck.model_validate(
        {"name": "health", "http": {"url": f"{base_url}/healthz", "timeout": "2s"}, "at": ["0s"]}
    )
    result = await run(check.model_dump())
    assert result.passed


async def test_verify_runner_dispatches_by_kind(base_url: str) -> None:
    prometheus = PrometheusCheckRunner(make_client(""))
    runner: CheckRunner = VerifyRunner(http=HttpCheckRunner(), prometheus=prometheus)
    assert (await runner.run(http_check(f"{base_url}/healthz"))).passed
    neither = await runner.run({"name": "x", "http": None, "prometheus": None, "at": ["0s"]})
    await prometheus.aclose()
    assert not neither.passed
    assert neither.summary == ("the check is misconfigured: set exactly one of http or prometheus")
