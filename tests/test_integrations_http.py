"""integrations.http: the shared client factory, Retry-After reading and the retry loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from integrations.http import (
    RetryPolicy,
    make_client,
    request_with_retries,
    retry_after_seconds,
)

NOW = 1_763_373_600.0  # 2025-11-17T10:00:00Z
TOKEN = "ghp_secretTOKEN1234567890"


class RecordingSleep:
    """An injectable `sleep` that records the waits and never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with `responses` in order, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def client_for(handler: Handler, base_url: str = "https://api.example.test") -> httpx.AsyncClient:
    return make_client(base_url, transport=httpx.MockTransport(handler))


def response(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    json: object = None,
    text: str | None = None,
) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, headers=headers, text=text)
    return httpx.Response(status, headers=headers, json=json)


# --- make_client ---------------------------------------------------------------------------


async def test_make_client_names_itself_and_follows_no_redirects() -> None:
    handler, seen = scripted(response(302, {"location": "https://elsewhere.test/"}))
    async with make_client(
        "https://api.example.test/api/v3",
        headers={"Accept": "application/json"},
        timeout=3.0,
        transport=httpx.MockTransport(handler),
    ) as client:
        answer = await client.get("/repos/acme/ledger")

    assert answer.status_code == 302
    assert len(seen) == 1
    assert str(seen[0].url) == "https://api.example.test/api/v3/repos/acme/ledger"
    assert seen[0].headers["user-agent"] == "releasebot"
    assert seen[0].headers["accept"] == "application/json"
    assert client.timeout == httpx.Timeout(3.0)
    assert client.follow_redirects is False


# --- retry_after_seconds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 300)}, 300.0),
        ({"x-ratelimit-reset": str(int(NOW) + 42)}, 42.0),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW) + 17)}, 17.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 10)}, 0.0),
        # A reset for a window that is not exhausted says nothing about this refusal.
        ({"x-ratelimit-remaining": "4999", "x-ratelimit-reset": str(int(NOW) + 300)}, None),
        # Retry-After wins over the window reset.
        ({"Retry-After": "7", "RateLimit-Remaining": "0", "RateLimit-Reset": "9999999999"}, 7.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(httpx.Response(429, headers=headers), now=NOW) == expected


def test_retry_after_accepts_an_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 90, tz=UTC)
    answer = httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    assert retry_after_seconds(answer, now=NOW) == pytest.approx(90.0)


# --- request_with_retries --------------------------------------------------------------------


async def test_5xx_then_success_retries_with_growing_delays_and_no_real_sleep() -> None:
    handler, seen = scripted(response(502), response(503), response(200, json={"ok": True}))
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        answer = await request_with_retries(
            client, "GET", "/things", attempts=3, backoff=0.5, sleep=sleep, clock=lambda: NOW
        )

    assert answer.json() == {"ok": True}
    assert len(seen) == 3
    assert sleep.calls == [0.5, 1.0]


async def test_backoff_is_capped() -> None:
    handler, seen = scripted(*(response(500) for _ in range(4)), response(200, json={}))
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        await request_with_retries(
            client, "GET", "/x", attempts=5, backoff=1.0, max_backoff=3.0, sleep=sleep
        )

    assert sleep.calls == [1.0, 2.0, 3.0, 3.0]


async def test_5xx_every_time_is_a_retryable_failure() -> None:
    handler, seen = scripted(*(response(503, text="upstream down") for _ in range(3)))
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/x", attempts=3, sleep=sleep)

    assert caught.value.retryable is True
    assert caught.value.status == 503
    assert caught.value.reason == "GET /x: 503 upstream down"
    assert len(seen) == 3
    assert len(sleep.calls) == 2


async def test_network_errors_are_retried_then_reported_as_retryable() -> None:
    handler, seen = scripted(
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        response(200, json={"ok": True}),
    )
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        answer = await request_with_retries(client, "GET", "/x", sleep=sleep)
    assert answer.status_code == 200
    assert sleep.calls == [0.5, 1.0]

    handler, seen = scripted(*(httpx.ConnectError("connection refused") for _ in range(2)))
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "POST", "/x", attempts=2, sleep=RecordingSleep())
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert caught.value.reason == "POST /x: ConnectError: connection refused"


async def test_429_with_a_long_retry_after_is_handed_back_to_the_outbox() -> None:
    handler, seen = scripted(
        response(429, {"Retry-After": "120"}, json={"message": "API rate limit exceeded"})
    )
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/x", sleep=sleep, clock=lambda: NOW)

    assert caught.value.retryable is True
    assert caught.value.retry_after == 120
    assert caught.value.status == 429
    assert "API rate limit exceeded" in caught.value.reason
    assert len(seen) == 1
    assert sleep.calls == []


async def test_429_with_a_short_retry_after_is_waited_out_in_place() -> None:
    handler, seen = scripted(response(429, {"Retry-After": "2"}), response(200, json={}))
    sleep = RecordingSleep()
    async with client_for(handler) as client:
        answer = await request_with_retries(client, "GET", "/x", sleep=sleep, max_inline_wait=5)

    assert answer.status_code == 200
    assert sleep.calls == [2.0]


async def test_a_short_rate_limit_on_the_last_attempt_is_still_retryable() -> None:
    handler, seen = scripted(response(429, {"Retry-After": "1"}))
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/x", attempts=1, sleep=RecordingSleep())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 1


async def test_gitlab_429_with_a_plain_text_body() -> None:
    handler, seen = scripted(
        response(
            429,
            {
                "Retry-After": "30",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(int(NOW) + 30),
            },
            text="Retry later\n",
        )
    )
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/projects/1", sleep=RecordingSleep())

    assert caught.value.retry_after == 30
    assert caught.value.reason.startswith("GET /projects/1: 429 Retry later")


async def test_403_with_an_exhausted_primary_limit_waits_until_the_reset() -> None:
    reset = int(NOW) + 1800
    handler, seen = scripted(
        response(
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
            json={"message": "API rate limit exceeded for installation ID 42."},
        )
    )
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(
                client, "GET", "/x", sleep=RecordingSleep(), clock=lambda: NOW
            )

    assert caught.value.retryable is True
    assert caught.value.retry_after == 1800
    assert caught.value.status == 403


async def test_403_secondary_limit_without_headers_waits_a_minute() -> None:
    handler, seen = scripted(
        response(
            403,
            json={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
            },
        )
    )
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/x", sleep=RecordingSleep())

    assert caught.value.retryable is True
    assert caught.value.retry_after == 60


async def test_plain_403_and_404_are_not_retryable() -> None:
    for status, message in ((403, "Resource not accessible by integration"), (404, "Not Found")):
        handler, seen = scripted(
            response(
                status,
                {"x-ratelimit-remaining": "4000"},
                json={"message": message, "documentation_url": "https://docs.github.com/rest"},
            )
        )
        sleep = RecordingSleep()
        async with client_for(handler) as client:
            with pytest.raises(DeliveryFailed) as caught:
                await request_with_retries(client, "GET", "/repos/acme/ledger?page=2", sleep=sleep)

        assert caught.value.retryable is False
        assert caught.value.status == status
        assert caught.value.retry_after is None
        assert caught.value.reason == f"GET /repos/acme/ledger: {status} {message}"
        assert len(seen) == 1
        assert sleep.calls == []


async def test_a_redirect_is_reported_not_followed() -> None:
    handler, seen = scripted(
        response(301, {"location": "https://api.example.test/repositories/1"}, json={})
    )
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(client, "GET", "/repos/acme/old-name")

    assert caught.value.retryable is False
    assert caught.value.status == 301
    assert "redirected to https://api.example.test/repositories/1" in caught.value.reason
    assert len(seen) == 1


async def test_secrets_never_reach_a_reason() -> None:
    handler, seen = scripted(
        response(401, json={"message": f"Bad credentials: {TOKEN}"}),
    )
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed) as caught:
            await request_with_retries(
                client,
                "GET",
                "/user",
                headers={"Authorization": f"Bearer {TOKEN}"},
                secrets=[TOKEN],
            )

    assert TOKEN not in caught.value.reason
    assert TOKEN not in str(caught.value)
    assert caught.value.reason == "GET /user: 401 Bad credentials: ***"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_retry_policy_carries_the_knobs() -> None:
    handler, seen = scripted(response(500), response(200, json={"n": 1}))
    sleep = RecordingSleep()
    policy = RetryPolicy(attempts=2, backoff=0.25, sleep=sleep, clock=lambda: NOW)
    async with client_for(handler) as client:
        answer = await policy.request(client, "GET", "/x", params={"page": 2})

    assert answer.json() == {"n": 1}
    assert sleep.calls == [0.25]
    assert seen[0].url.params["page"] == "2"

    handler, seen = scripted(response(500))
    async with client_for(handler) as client:
        with pytest.raises(DeliveryFailed):
            await policy.request(client, "POST", "/x", attempts=1)
    assert len(seen) == 1
