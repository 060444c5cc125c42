"""The demo's stand-ins: GitHub and PagerDuty answer requests that arrive together;
Prometheus' range queries and Grafana's annotations answer as the real APIs do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from bot.cli.demo import World, outside_world
from bot.config import load_config
from tests.helpers import EXAMPLE_CONFIG
from tests.servers import serve_in_thread

WAIT_SECONDS = 10.0


async def test_a_dispatch_still_arriving_does_not_stall_a_page() -> None:
    world = World()
    first_part_sent, page_answered = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"ref": "main", '
        first_part_sent.set()  # httpx asks for more once the first part is written
        await page_answered.wait()  # the rest of the body comes after the page's answer
        yield b'"inputs": {}}'

    dispatch_url = "/repos/acme/checkout/actions/workflows/deploy-production.yml/dispatches"
    with serve_in_thread(outside_world(world)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=WAIT_SECONDS) as http:
            dispatch = asyncio.create_task(http.post(dispatch_url, content=slow_body()))
            await asyncio.wait_for(first_part_sent.wait(), WAIT_SECONDS)
            page = await http.post("/v2/change/enqueue", json={"dedup_key": "k1"})
            page_answered.set()
            assert page.status_code == 202
            assert (await asyncio.wait_for(dispatch, WAIT_SECONDS)).status_code == 204
    assert world.dispatches == [{"ref": "main", "inputs": {}}]
    assert world.pages == [{"dedup_key": "k1"}]


async def test_range_queries_answer_a_matrix_that_follows_the_service_health() -> None:
    world = World()
    window = {"start": "1000", "end": "1300", "step": "30"}
    production = load_config(EXAMPLE_CONFIG).services["search"].environment("production")
    assert production is not None
    [check] = [c for c in production.verify if c.name == "p99-latency"]
    assert check.prometheus_range is not None
    latency = check.prometheus_range.query
    with serve_in_thread(outside_world(world)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=WAIT_SECONDS) as http:
            healthy = await http.get("/api/v1/query_range", params={**window, "query": latency})
            world.healthy = False
            sick = await http.get("/api/v1/query_range", params={**window, "query": latency})
    assert healthy.status_code == 200
    assert healthy.json()["data"]["resultType"] == "matrix"
    [series] = healthy.json()["data"]["result"]
    assert [t for t, _ in series["values"]] == [1000 + 30 * n for n in range(11)]
    assert max(float(v) for _, v in series["values"]) < 0.3  # p99-latency's max in the example
    assert min(float(v) for _, v in sick.json()["data"]["result"][0]["values"]) > 0.3


async def test_grafana_annotations_are_added_and_their_regions_closed() -> None:
    world = World()
    with serve_in_thread(outside_world(world)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=WAIT_SECONDS) as http:
            added = await http.post("/api/annotations", json={"time": 1, "tags": ["deploy"]})
            closed = await http.patch("/api/annotations/1", json={"timeEnd": 2, "tags": []})
    assert added.json() == {"id": 1, "message": "Annotation added"}
    assert closed.json() == {"message": "Annotation patched"}
    assert world.annotations == [
        {"time": 1, "tags": ["deploy"]},
        {"timeEnd": 2, "tags": [], "id": 1},
    ]
