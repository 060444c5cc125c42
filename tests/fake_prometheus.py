"""A fake Prometheus answering `/api/v1/query` and `/api/v1/query_range` in the shapes of the
published examples (`fixtures/prometheus/*.json`): the values come from the test."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import httpx

from tests.helpers import fixture

HOST = "prometheus.test"
URL = f"http://{HOST}:9090"
VECTOR = fixture("prometheus", "query__vector-openapi-example.json")
MATRIX = fixture("prometheus", "query_range__matrix-docs.json")
ERROR = fixture("prometheus", "query__error-openapi-example.json")  # "TSDB not ready"


class FakePrometheus:
    """`series(query, t)` gives a range query's value at t; `ratios[window]` the error ratio
    an SLO query over `[window]` answers (None: an empty vector); `down` answers the
    documented error for everything."""

    def __init__(self, series: Callable[[str, float], float] | None = None) -> None:
        self.series = series or (lambda query, t: 0.0)
        self.ratios: dict[str, float | None] = {}
        self.down = False
        self.requests: list[httpx.Request] = []

    def handles(self, request: httpx.Request) -> bool:
        return request.url.host == HOST

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            return httpx.Response(503, json=ERROR)
        params = request.url.params
        if request.url.path == "/api/v1/query_range":
            start, end, step = (float(params[k]) for k in ("start", "end", "step"))
            values, t = [], start
            while t <= end + 1e-6:
                values.append([t, str(self.series(params["query"], t))])
                t += step
            body = copy.deepcopy(MATRIX)
            body["data"]["result"] = [{"metric": {"job": "checkout"}, "values": values}]
            return httpx.Response(200, json=body)
        if request.url.path == "/api/v1/query":
            window = re.search(r"\[(\w+)\]", params["query"])
            ratio = self.ratios.get(window.group(1) if window else "", 0.0)
            body = copy.deepcopy(VECTOR)
            body["data"]["result"] = (
                [] if ratio is None else [{"metric": {}, "value": [1767436620, str(ratio)]}]
            )
            return httpx.Response(200, json=body)
        return httpx.Response(404, text="404 page not found")


def routed(fake: FakePrometheus, rest: httpx.MockTransport) -> httpx.MockTransport:
    """One transport: the fake Prometheus for its host, `rest` (the other fakes) otherwise."""

    def route(request: httpx.Request) -> httpx.Response:
        if fake.handles(request):
            return fake.handle(request)
        return rest.handle_request(request)

    return httpx.MockTransport(route)
