"""Measure a service's error budget for the outbox worker, then draw the consequences.

`BudgetMeter.handlers()` gives the worker its sender for `slo.measure` rows: ask the
`BudgetSource` (Prometheus) for the error ratios of the service's SLO over its window and
the burn-rate windows, and record the budget, known or unknown, in one transaction with
what follows (`reactions.budget_measured`: waiting gates settle, a held automatic promotion
goes on or is held with the reason). Prometheus not answering is not retried here: the
budget is recorded as unknown with the reason, and the gate applies `unknown:`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.domain.slo import Budget, MeasureBudget, budget_windows
from bot.ports import BudgetSource, Clock
from bot.services import reactions
from bot.store.db import Database


class BudgetMeter:
    """The sender of `slo.measure` outbox rows."""

    def __init__(self, *, db: Database, clock: Clock, config: Config, source: BudgetSource):
        self._db = db
        self._clock = clock
        self._config = config
        self._source = source

    def handlers(self) -> dict[str, Callable[[Any, Any], Awaitable[None]]]:
        return {MeasureBudget.KIND: self._measure}

    async def _measure(self, row: Any, batch: Any) -> None:
        message = MeasureBudget.from_payload(row.payload)
        budget = await self.measure(message.service)
        if budget is None:
            return  # the service has no slo (any more): nothing to measure
        now = self._clock.now()
        await asyncio.to_thread(
            self._db.write,
            lambda s: reactions.budget_measured(
                s, now=now, config=self._config, budget=budget, promote=message.promote
            ),
        )

    async def measure(self, service: str) -> Budget | None:
        """The service's budget now (unknown, with the reason, when Prometheus fails)."""
        found = self._config.services.get(service)
        slo = found.slo if found is not None else None
        if slo is None:
            return None
        window = slo.window_label
        try:
            ratios = await self._source.error_ratios(
                url=slo.url, good=slo.good, total=slo.total, windows=budget_windows(window)
            )
        except DeliveryFailed as error:
            return Budget.unknown(
                service=service,
                objective=slo.objective,
                window=window,
                reason=f"Prometheus could not be asked: {error.reason}",
                measured_at=self._clock.now().isoformat(),
            )
        return Budget.from_ratios(
            service=service,
            objective=slo.objective,
            window=window,
            ratios=ratios,
            measured_at=self._clock.now().isoformat(),
        )
