"""The check runners of every `verify:` kind, built for the running app.

runners = build_runners(transport, secrets=os.environ.get, clock=SystemClock())
runners["prometheus_range"].run(check)   # each kind's runner; `aclose()` when done
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

import httpx

from bot.ports import CheckResult, Clock
from integrations.checks.baseline import BaselineCheckRunner
from integrations.checks.budget import BurnRateCheckRunner, PrometheusBudget
from integrations.checks.datadog import DatadogCheckRunner
from integrations.checks.http import HttpCheckRunner
from integrations.checks.nrql import NrqlCheckRunner
from integrations.checks.prometheus import PrometheusCheckRunner
from integrations.checks.prometheus_range import PrometheusRangeCheckRunner
from integrations.http import make_client


class ClosingRunner(Protocol):
    """A `CheckRunner` holding an HTTP client to close."""

    async def run(self, check: Mapping[str, Any]) -> CheckResult: ...

    async def aclose(self) -> None: ...


def build_runners(
    transport: httpx.AsyncBaseTransport | None,
    *,
    secrets: Callable[[str], str | None],
    clock: Clock,
) -> dict[str, ClosingRunner]:
    """One runner per kind; secrets (Datadog and New Relic keys) are read when a check runs."""
    client = partial(make_client, "", transport=transport)
    return {
        "http": HttpCheckRunner(client()),
        "prometheus": PrometheusCheckRunner(client()),
        "prometheus_range": PrometheusRangeCheckRunner(client(), clock=clock),
        "datadog": DatadogCheckRunner(client(), secrets=secrets, clock=clock),
        "nrql": NrqlCheckRunner(client(), secrets=secrets),
        "baseline": BaselineCheckRunner(client(), clock=clock),
        "burn_rate": BurnRateCheckRunner(PrometheusBudget(client())),
    }
