"""PagerDutyPager and OpsgeniePager against MockTransports answering like the real APIs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.domain.errors import DeliveryFailed
from bot.ports import Pager, PagerEvent
from integrations.http import RetryPolicy, make_client
from integrations.pagers.opsgenie import OPSGENIE_API_URL, OpsgeniePager
from integrations.pagers.pagerduty import PAGERDUTY_EVENTS_URL, RATE_LIMIT_WAIT, PagerDutyPager

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty"
ROUTING_KEY = "e93facc04764012d7bfb002500d5d1a6"
GENIE_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"
DEDUP = "release-bot/checkout/42"
NOW = datetime(2025, 11, 17, 10, 0, tzinfo=UTC)
REQUEST_ID = "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def event(action: str = "trigger", **changes: Any) -> PagerEvent:
    values: dict[str, Any] = {
        "action": action,
        "routing_key": ROUTING_KEY,
        "dedup_key": DEDUP,
        "summary": "checkout 1.4.2 failed verification in production: error-rate 0.02 > max 0.01",
        "source": "releasebot/checkout/production",
        "severity": "critical",
        "links": (("https://slack.example.com/archives/C1/p1", "Release thread"),),
        "custom_details": {"service": "checkout", "version": "1.4.2", "error_rate": 0.02},
        "timestamp": NOW,
    }
    values.update(changes)
    return PagerEvent(**values)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeApi:
    """Records requests; answers with queued responses (the last one repeats)."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def og_event(action: str = "trigger", **changes: Any) -> PagerEvent:
    return event(action, **({"routing_key": GENIE_KEY} | changes))


def accepted_pd(dedup_key: str = DEDUP) -> httpx.Response:
    return httpx.Response(
        202, json=fixture("events_v2_response__success.json") | {"dedup_key": dedup_key}
    )


def accepted_og() -> httpx.Response:
    return httpx.Response(
        202, json={"result": "Request will be processed", "took": 0.302, "requestId": REQUEST_ID}
    )


MakePager = Callable[..., tuple[Any, FakeApi, RecordingSleep]]


@pytest.fixture
async def make_pager() -> AsyncIterator[MakePager]:
    made: list[PagerDutyPager | OpsgeniePager] = []

    def make(kind: str, *answers: httpx.Response, **policy: Any) -> tuple[Any, FakeApi, Any]:
        fake = FakeApi(*answers)
        sleep = RecordingSleep()
        retry = RetryPolicy(sleep=sleep, clock=lambda: NOW.timestamp(), **policy)
        transport = httpx.MockTransport(fake.handler)
        pager: PagerDutyPager | OpsgeniePager
        if kind == "pagerduty":
            client = make_client(PAGERDUTY_EVENTS_URL, transport=transport)
            pager = PagerDutyPager(client, retry=retry, clock=FixedClock())
        else:
            pager = OpsgeniePager(make_client(OPSGENIE_API_URL, transport=transport), retry=retry)
        made.append(pager)
        return pager, fake, sleep

    yield make
    for pager in made:
        await pager.aclose()


def as_pagers(pagerduty: PagerDutyPager, opsgenie: OpsgeniePager) -> list[Pager]:
    """Both satisfy `bot.ports.Pager` (checked by mypy)."""
    return [pagerduty, opsgenie]


class FixedClock:
    def now(self) -> datetime:
        return NOW


def shape(value: Any) -> Any:
    """The keys (recursively) and JSON types of a document, for comparing with a fixture."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# --- PagerDuty -----------------------------------------------------------------------------


async def test_pagerduty_trigger_matches_the_events_v2_shape(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    key = await pager.send(event())
    assert key == DEDUP
    (request,) = fake.requests
    assert request.method == "POST"
    assert str(request.url) == "https://events.pagerduty.com/v2/enqueue"
    assert "authorization" not in request.headers  # the routing key in the body is the credential
    assert request.headers["content-type"] == "application/json"
    body = fake.body()
    assert body == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": DEDUP,
        "payload": {
            "summary": event().summary,
            "source": "releasebot/checkout/production",
            "severity": "critical",
            "timestamp": "2025-11-17T10:00:00.000Z",
            "custom_details": {"service": "checkout", "version": "1.4.2", "error_rate": 0.02},
        },
        "links": [{"href": "https://slack.example.com/archives/C1/p1", "text": "Release thread"}],
        "client": "releasebot",
    }
    # every key we send is one the documented example uses, with the same JSON type
    example = shape(fixture("events_v2__trigger.json"))
    ours = shape(body)
    for key, kind in ours.items():
        if key == "payload":
            for inner, inner_kind in kind.items():
                if inner != "custom_details":
                    assert example["payload"][inner] == inner_kind, inner
        else:
            assert example[key] == kind, key


async def test_pagerduty_trigger_without_dedup_key_returns_the_generated_one(
    make_pager: MakePager,
) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd("srv01/HTTP"))
    key = await pager.send(event(dedup_key=None, custom_details={}, links=(), timestamp=None))
    assert key == "srv01/HTTP"
    body = fake.body()
    assert "dedup_key" not in body and "links" not in body
    assert set(body["payload"]) == {"summary", "source", "severity"}


async def test_pagerduty_response_fixture_is_read(make_pager: MakePager) -> None:
    pager, _, _ = make_pager(
        "pagerduty", httpx.Response(202, json=fixture("events_v2_response__success.json"))
    )
    assert await pager.send(event()) == "srv01/HTTP"


async def test_pagerduty_summary_is_cut_to_1024_and_severity_normalised(
    make_pager: MakePager,
) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    await pager.send(event(summary="x" * 2000, severity="fatal"))
    payload = fake.body()["payload"]
    assert len(payload["summary"]) == 1024 and payload["summary"].endswith("…")
    assert payload["severity"] == "error"


async def test_pagerduty_timestamp_is_utc(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    paris = timezone(timedelta(hours=1))
    await pager.send(event(timestamp=datetime(2025, 11, 17, 11, 0, 0, 250000, tzinfo=paris)))
    assert fake.body()["payload"]["timestamp"] == "2025-11-17T10:00:00.250Z"


async def test_pagerduty_resolve(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    assert await pager.send(event("resolve")) == DEDUP
    assert fake.requests[0].url.path == "/v2/enqueue"
    assert fake.body() == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": DEDUP,
        "client": "releasebot",
    }


async def test_pagerduty_resolve_needs_a_dedup_key(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event("resolve", dedup_key=None))
    assert not caught.value.retryable
    assert fake.requests == []


async def test_pagerduty_change_event_matches_the_fixture_shape(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager(
        "pagerduty",
        httpx.Response(202, json={"status": "success", "message": "Change event processed"}),
    )
    assert await pager.send(event("change", timestamp=None, dedup_key=None)) is None
    assert str(fake.requests[0].url) == "https://events.pagerduty.com/v2/change/enqueue"
    body = fake.body()
    assert body == {
        "routing_key": ROUTING_KEY,
        "payload": {
            "summary": event().summary,
            "source": "releasebot/checkout/production",
            "timestamp": "2025-11-17T10:00:00.000Z",  # from the clock
            "custom_details": {"service": "checkout", "version": "1.4.2", "error_rate": 0.02},
        },
        "links": [{"href": "https://slack.example.com/archives/C1/p1", "text": "Release thread"}],
    }
    example = fixture("change_event__git.json")
    assert set(body) == set(example)
    assert set(body["payload"]) == set(example["payload"])
    assert shape(body["links"]) == shape(example["links"])


async def test_pagerduty_400_is_not_retryable_and_joins_errors(make_pager: MakePager) -> None:
    pager, fake, sleep = make_pager(
        "pagerduty", httpx.Response(400, json=fixture("events_v2_response__error.json"))
    )
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    failure = caught.value
    assert not failure.retryable and failure.status == 400
    assert failure.reason == (
        "PagerDuty POST /v2/enqueue: 400 Event object format is unrecognized: JSON parse error"
    )
    assert len(fake.requests) == 1 and sleep.calls == []


async def test_pagerduty_400_with_several_errors(make_pager: MakePager) -> None:
    answer = {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)", "x"],
    }
    pager, _, _ = make_pager("pagerduty", httpx.Response(400, json=answer))
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    assert caught.value.reason.endswith(
        "Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters); x"
    )


async def test_pagerduty_429_is_retryable_after_30_s(make_pager: MakePager) -> None:
    pager, fake, sleep = make_pager(
        "pagerduty", httpx.Response(429, json={"status": "throttle exceeded"})
    )
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    failure = caught.value
    assert failure.retryable and failure.status == 429
    assert failure.retry_after == RATE_LIMIT_WAIT == 30.0
    assert len(fake.requests) == 1 and sleep.calls == []  # 30 s is too long to wait in place


async def test_pagerduty_5xx_is_retried_then_retryable(make_pager: MakePager) -> None:
    pager, fake, sleep = make_pager("pagerduty", httpx.Response(503, text="Service Unavailable"))
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    assert caught.value.retryable and caught.value.status == 503
    assert len(fake.requests) == 3
    assert sleep.calls == [0.5, 1.0]


async def test_pagerduty_5xx_then_success(make_pager: MakePager) -> None:
    pager, fake, sleep = make_pager(
        "pagerduty", httpx.Response(502, text="Bad Gateway"), accepted_pd()
    )
    assert await pager.send(event()) == DEDUP
    assert len(fake.requests) == 2 and sleep.calls == [0.5]
    assert fake.body(0) == fake.body(1)  # the same dedup_key on the retry


async def test_pagerduty_network_error_is_retryable(make_pager: MakePager) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    sleep = RecordingSleep()
    pager = PagerDutyPager(
        make_client(PAGERDUTY_EVENTS_URL, transport=httpx.MockTransport(refuse)),
        retry=RetryPolicy(sleep=sleep, attempts=2),
    )
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    await pager.aclose()
    assert caught.value.retryable
    assert caught.value.reason == (
        "PagerDuty POST /v2/enqueue: ConnectError: All connection attempts failed"
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429, 500, 503])
async def test_pagerduty_routing_key_never_in_a_reason(make_pager: MakePager, status: int) -> None:
    echo = {"status": "x", "message": f"bad key {ROUTING_KEY}", "errors": [ROUTING_KEY]}
    pager, _, _ = make_pager("pagerduty", httpx.Response(status, json=echo))
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event())
    assert ROUTING_KEY not in str(caught.value)
    assert ROUTING_KEY not in caught.value.reason
    assert "***" in caught.value.reason


async def test_pagerduty_missing_routing_key_is_refused(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("pagerduty", accepted_pd())
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(event(routing_key=""))
    assert not caught.value.retryable and fake.requests == []


# --- Opsgenie ------------------------------------------------------------------------------


async def test_opsgenie_trigger(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    assert await pager.send(og_event()) == REQUEST_ID
    (request,) = fake.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.opsgenie.com/v2/alerts"
    assert request.headers["authorization"] == f"GenieKey {GENIE_KEY}"
    body = fake.body()
    assert body == {
        "message": og_event().summary,
        "alias": DEDUP,
        "description": (
            f"{og_event().summary}\n\nRelease thread: https://slack.example.com/archives/C1/p1"
        ),
        "priority": "P1",
        "details": {"service": "checkout", "version": "1.4.2", "error_rate": "0.02"},
        "source": "releasebot/checkout/production",
        "entity": "releasebot/checkout/production",
    }


async def test_opsgenie_message_is_cut_to_130(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    await pager.send(og_event(summary="y" * 200))
    body = fake.body()
    assert len(body["message"]) == 130 and body["message"].endswith("…")
    assert body["description"].startswith("y" * 200)


@pytest.mark.parametrize(
    ("severity", "priority"),
    [("critical", "P1"), ("error", "P2"), ("warning", "P3"), ("info", "P4"), ("odd", "P2")],
)
async def test_opsgenie_priority_from_severity(
    make_pager: MakePager, severity: str, priority: str
) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    await pager.send(og_event(severity=severity, component="checkout-api"))
    assert fake.body()["priority"] == priority
    assert fake.body()["entity"] == "checkout-api"


async def test_opsgenie_resolve_closes_by_alias(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    assert await pager.send(og_event("resolve", summary="verification passed on retry")) == (
        REQUEST_ID
    )
    (request,) = fake.requests
    assert (
        request.url.raw_path == b"/v2/alerts/release-bot%2Fcheckout%2F42/close?identifierType=alias"
    )
    assert request.url.params["identifierType"] == "alias"
    assert request.headers["authorization"] == f"GenieKey {GENIE_KEY}"
    assert fake.body() == {
        "source": "releasebot/checkout/production",
        "note": "verification passed on retry",
    }


async def test_opsgenie_resolve_needs_an_alias(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(og_event("resolve", dedup_key=None))
    assert not caught.value.retryable and fake.requests == []


async def test_opsgenie_change_is_a_p5_alert_tagged_change(make_pager: MakePager) -> None:
    pager, fake, _ = make_pager("opsgenie", accepted_og())
    await pager.send(og_event("change", dedup_key=None, summary="checkout 1.4.2 deployed"))
    assert fake.requests[0].url.path == "/v2/alerts"
    body = fake.body()
    assert body["priority"] == "P5"
    assert body["tags"] == ["change"]
    assert "alias" not in body
    assert body["message"] == "checkout 1.4.2 deployed"


async def test_opsgenie_429_uses_the_rate_limit_period(make_pager: MakePager) -> None:
    limited = httpx.Response(
        429,
        headers={
            "X-RateLimit-State": "THROTTLED",
            "X-RateLimit-Reason": "INTEGRATION",
            "X-RateLimit-Period-In-Sec": "60",
        },
        json={"message": "You are making too many requests!", "took": 0.0, "requestId": "r"},
    )
    pager, fake, sleep = make_pager("opsgenie", limited)
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(og_event())
    assert caught.value.retryable and caught.value.retry_after == 60.0
    assert caught.value.status == 429
    assert "You are making too many requests!" in caught.value.reason
    assert len(fake.requests) == 1 and sleep.calls == []


async def test_opsgenie_429_short_period_is_waited_in_place(make_pager: MakePager) -> None:
    limited = httpx.Response(429, headers={"X-RateLimit-Period-In-Sec": "1"}, json={})
    pager, fake, sleep = make_pager("opsgenie", limited, accepted_og())
    assert await pager.send(og_event()) == REQUEST_ID
    assert sleep.calls == [1.0] and len(fake.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_opsgenie_4xx_is_not_retryable(make_pager: MakePager, status: int) -> None:
    answer = {"message": f"refused with {GENIE_KEY}", "took": 0.001, "requestId": "r"}
    if status == 422:
        answer["errors"] = {"message": "Message can not be empty."}
    pager, fake, _ = make_pager("opsgenie", httpx.Response(status, json=answer))
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(og_event())
    assert not caught.value.retryable and caught.value.status == status
    assert caught.value.reason.startswith(f"Opsgenie POST /v2/alerts: {status} refused with ***")
    assert GENIE_KEY not in str(caught.value)
    assert len(fake.requests) == 1
    if status == 422:
        assert caught.value.reason.endswith("(message: Message can not be empty.)")


async def test_opsgenie_5xx_is_retried_then_retryable(make_pager: MakePager) -> None:
    pager, fake, sleep = make_pager("opsgenie", httpx.Response(500, json={"message": "oops"}))
    with pytest.raises(DeliveryFailed) as caught:
        await pager.send(og_event())
    assert caught.value.retryable and len(fake.requests) == 3 and sleep.calls == [0.5, 1.0]


async def test_opsgenie_uses_the_eu_endpoint_when_given(make_pager: MakePager) -> None:
    fake = FakeApi(accepted_og())
    client = make_client("https://api.eu.opsgenie.com", transport=httpx.MockTransport(fake.handler))
    pager = OpsgeniePager(client)
    await pager.send(og_event())
    await pager.aclose()
    assert fake.requests[0].url.host == "api.eu.opsgenie.com"
