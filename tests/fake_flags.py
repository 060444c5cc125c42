"""LaunchDarkly's REST API and Unleash's Admin API as httpx transports: they check the
headers and bodies the way the real services do, keep the flag's state, and record every
request. `FlagEdge` puts them beside the rest of the fake outside world (`FakeEdge`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bot.app import Overrides
from bot.config import Config
from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.slackflow import gated_env

LD_HOST = "app.launchdarkly.com"
UNLEASH_HOST = "unleash.acme.example"
LD_API_KEY = "api-0123-ld-secret-token"
UNLEASH_TOKEN = "*:production.unleash-secret-token"


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message})


class FakeLaunchDarkly:
    """`GET`/`PATCH /api/v2/flags/{projectKey}/{flagKey}`: semantic patches only (the
    `domain-model=launchdarkly.semanticpatch` content type), `LD-API-Version` required,
    `Authorization` the access token itself; a boolean flag with two variations."""

    def __init__(self, *, project: str = "acme-web", flag: str = "new-checkout-flow") -> None:
        self.requests: list[httpx.Request] = []
        self.flags: dict[tuple[str, str], dict[str, Any]] = {
            (project, flag): {
                "key": flag,
                "kind": "boolean",
                "_version": 1,
                "variations": [
                    {"_id": "e432f62b-55f6-49dd-a02f-eb24acf39d05", "value": True},
                    {"_id": "a00bf58d-d252-476c-b915-15a74becacb4", "value": False},
                ],
                "environments": {"production": {"on": False, "_version": 1, "fallthrough": {}}},
            }
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != LD_API_KEY:
            return _error(401, "unauthorized", "Invalid account ID header")
        if request.headers.get("ld-api-version") != "20240415":
            return _error(400, "invalid_request", "unknown or missing LD-API-Version")
        parts = request.url.path.split("/")
        if parts[:4] != ["", "api", "v2", "flags"] or len(parts) != 6:
            return _error(404, "not_found", "Unknown resource")
        flag = self.flags.get((parts[4], parts[5]))
        if flag is None:
            return _error(404, "not_found", "Unknown flag")
        if request.method == "GET":
            return httpx.Response(200, json=flag)
        if request.method != "PATCH":
            return _error(405, "method_not_allowed", "Method not allowed")
        content_type = request.headers.get("content-type", "")
        if "domain-model=launchdarkly.semanticpatch" not in content_type:
            return _error(400, "invalid_request", "expected a JSON patch array")
        return self._patch(flag, json.loads(request.content))

    def _patch(self, flag: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        env = flag["environments"].get(body.get("environmentKey"))
        if env is None:
            return _error(400, "invalid_request", "environmentKey is required")
        ids = [v["_id"] for v in flag["variations"]]
        for instruction in body.get("instructions", []):
            kind = instruction.get("kind")
            if kind == "turnFlagOn":
                env["on"] = True
            elif kind == "turnFlagOff":
                env["on"] = False
            elif kind == "updateFallthroughVariationOrRollout":
                weights = instruction.get("rolloutWeights") or {}
                if set(weights) - set(ids) or sum(weights.values()) != 100_000:
                    return _error(400, "invalid_request", "rollout weights must sum to 100000")
                env["fallthrough"] = {
                    "rollout": {
                        "variations": [
                            {"variation": ids.index(v), "weight": w} for v, w in weights.items()
                        ]
                    }
                }
            else:
                return _error(400, "invalid_request", f"unknown instruction kind {kind}")
        env["_version"] += 1
        flag["_version"] += 1
        return httpx.Response(200, json=flag)

    def serving(self, project: str = "acme-web", flag: str = "new-checkout-flow") -> int:
        """The percentage served the true variation in production (0 when off)."""
        env = self.flags[(project, flag)]["environments"]["production"]
        if not env["on"]:
            return 0
        rollout = env["fallthrough"].get("rollout") or {"variations": []}
        share = sum(v["weight"] for v in rollout["variations"] if v["variation"] == 0)
        return share // 1000

    def patches(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "PATCH"]


class FakeUnleash:
    """The Admin API's feature environments: strategies listed, added (`POST`) and
    updated (`PUT .../strategies/{id}`), and `POST .../on|off`; `Authorization` the token."""

    def __init__(self, *, project: str = "default", feature: str = "new-checkout-flow") -> None:
        self.requests: list[httpx.Request] = []
        self.features: dict[tuple[str, str], dict[str, Any]] = {
            (project, feature): {"production": {"enabled": False, "strategies": []}}
        }
        self._ids = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != UNLEASH_TOKEN:
            return httpx.Response(401, json={"message": "You must log in to use Unleash."})
        parts = request.url.path.split("/")
        # /api/admin/projects/{p}/features/{f}/environments/{e}/...
        if parts[:4] != ["", "api", "admin", "projects"] or len(parts) < 10:
            return httpx.Response(404, json={"message": "Not found"})
        feature = self.features.get((parts[4], parts[6]))
        env = feature.get(parts[8]) if feature is not None else None
        if env is None:
            return httpx.Response(404, json={"message": f"Could not find feature {parts[6]}"})
        return self._environment(request, env, parts[9:])

    def _environment(
        self, request: httpx.Request, env: dict[str, Any], rest: list[str]
    ) -> httpx.Response:
        if rest in (["on"], ["off"]) and request.method == "POST":
            env["enabled"] = rest == ["on"]
            return httpx.Response(200)
        if rest == ["strategies"] and request.method == "GET":
            return httpx.Response(200, json=env["strategies"])
        if rest[:1] != ["strategies"]:
            return httpx.Response(404, json={"message": "Not found"})
        body = json.loads(request.content)
        if not body.get("name") or not isinstance(body.get("parameters"), dict):
            return httpx.Response(400, json={"details": [{"message": "name is required"}]})
        if rest == ["strategies"] and request.method == "POST":
            self._ids += 1
            strategy = {"id": f"3f2a1b4c-000{self._ids}", **body}
            env["strategies"].append(strategy)
            return httpx.Response(200, json=strategy)
        found = next((s for s in env["strategies"] if rest == ["strategies", s["id"]]), None)
        if found is None or request.method != "PUT":
            return httpx.Response(404, json={"message": "Could not find strategy"})
        found.update(body)
        return httpx.Response(200, json=found)

    def serving(self, project: str = "default", feature: str = "new-checkout-flow") -> int:
        env = self.features[(project, feature)]["production"]
        if not env["enabled"]:
            return 0
        rollouts = [s for s in env["strategies"] if s["name"] == "flexibleRollout"]
        return int(rollouts[0]["parameters"]["rollout"]) if rollouts else 100


class FlagEdge:
    """The flag platforms beside the rest of the fake outside world."""

    def __init__(self, edge: FakeEdge) -> None:
        self.edge = edge
        self.launchdarkly = FakeLaunchDarkly()
        self.unleash = FakeUnleash()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == LD_HOST:
            return self.launchdarkly.handle(request)
        if request.url.host == UNLEASH_HOST:
            return self.unleash.handle(request)
        return self.edge._route(request)


@asynccontextmanager
async def flag_bot(
    bot_factory: BotFactory,
    clock: FrozenClock,
    app_private_key: str,
    *,
    transport: httpx.AsyncBaseTransport,
    environ: dict[str, str],
    config: Config | None = None,
) -> AsyncIterator[Bot]:
    """The bot the flag tests drive: the flag platforms behind `transport`, their secrets in
    `environ`, the scheduler and the outbox worker off (the tests run them), and the GitHub
    App of the gate tests."""
    overrides = Overrides(
        clock=clock,
        config=config,
        start_scheduler=False,
        run_outbox_worker=False,
        process_before_response=True,
        http_transport=transport,
        environ=environ,
    )
    async with bot_factory(env=gated_env(app_private_key), overrides=overrides) as running:
        yield running


def flag_fixtures(
    *, environ: dict[str, str], config: Callable[[], Config] | None = None
) -> tuple[Any, Any]:
    """The `flags` (the fake platforms) and `bot` (`flag_bot` over them, with `environ` and
    the config `config` builds, the example's by default) fixtures of a flag test module:

        flags, bot = flag_fixtures(environ={"LAUNCHDARKLY_API_KEY": LD_API_KEY})
    """

    @pytest.fixture(name="flags")
    def flags_fixture(edge: FakeEdge) -> FlagEdge:
        return FlagEdge(edge)

    @pytest.fixture(name="bot")
    async def bot_fixture(
        bot_factory: BotFactory, clock: FrozenClock, flags: FlagEdge, app_private_key: str
    ) -> AsyncIterator[Bot]:
        built = config() if config is not None else None
        async with flag_bot(
            bot_factory,
            clock,
            app_private_key,
            transport=flags.transport,
            environ=environ,
            config=built,
        ) as running:
            yield running

    return flags_fixture, bot_fixture
