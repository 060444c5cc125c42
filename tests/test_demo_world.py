"""The demo's stand-in for GitHub and PagerDuty answers requests that arrive together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from bot.cli.demo import World, outside_world
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
