"""Every inbound edge fed generated requests, signed correctly (strategies in tests/fuzzing.py).

For each webhook route, `/slack/events` (commands, clicks, modal submissions, Events API) and
`/api/v1/gates`, hypothesis draws real payloads mutated with hostile values, raw bodies that
are no payload at all, and odd headers. Every answer must be a 2xx or a 4xx, never a 5xx; a
4xx must leave every table as it was; whatever was stored must fit its column and hold no NUL
(what PostgreSQL refuses and SQLite lets through); and the app must still answer /healthz.

Bounded for the suite (derandomized, 50 examples per edge); `bench/fuzz_inbound.py` runs the
same strategies for longer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from tests.conftest import Bot, BotFactory
from tests.fakes import FakeEdge, FrozenClock
from tests.fuzzing import EDGES, FUZZ_ENV, Inbound
from tests.slackflow import gated_env, gated_overrides

EXAMPLES = 50
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
async def fuzz_bot(
    bot_factory: BotFactory, clock: FrozenClock, edge: FakeEdge, app_private_key: str
) -> AsyncIterator[Bot]:
    """The app with every provider's secret, the gate API and a GitHub App; clicks are
    processed before they are answered, so a failing listener shows as a 500."""
    env = gated_env(app_private_key, **FUZZ_ENV)
    async with bot_factory(env=env, overrides=gated_overrides(clock, edge)) as running:
        yield running


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows in every table."""
    with engine.connect() as conn:
        return {
            table.name: int(
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
            for table in SQLModel.metadata.sorted_tables
        }


def unstorable(engine: sa.Engine) -> list[str]:
    """What SQLite kept and PostgreSQL would have refused: text longer than its column or
    holding a NUL, a whole number beyond its column's range."""
    problems: list[str] = []
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.Integer)]
            for row in conn.execute(sa.select(*columns)) if columns else ():
                for column, value in zip(columns, row, strict=True):
                    problem = _unstorable(column, value)
                    if problem:
                        problems.append(f"{table.name}.{column.name}: {problem}")
    return problems


def _unstorable(column: sa.Column[object], value: object) -> str | None:
    if isinstance(value, str):
        limit = getattr(column.type, "length", None)
        if limit is not None and len(value) > limit:
            return f"{len(value)} characters > {limit}"
        return "NUL" if "\x00" in value else None
    if isinstance(value, int) and not isinstance(value, bool):
        bits = 63 if isinstance(column.type, sa.BigInteger) else 31
        return None if -(2**bits) <= value < 2**bits else f"{value} beyond {bits + 1} bits"
    return None


async def exchange(bot: Bot, inbound: Inbound) -> int:
    """Send one request and check what it left behind; the status it got."""
    engine = bot.runtime.db.engine
    before = row_counts(engine)
    headers = {name.encode(): value.encode("latin-1") for name, value in inbound.headers.items()}
    answer = await bot.http.post(inbound.path, content=inbound.body, headers=headers)
    status = answer.status_code
    assert 200 <= status < 500, f"{status}: {answer.text[:500]}"
    if status >= 400:
        assert row_counts(engine) == before, f"a {status} stored something: {answer.text[:300]}"
    assert unstorable(engine) == []
    health = await bot.http.get("/healthz")
    assert health.status_code == 200
    return status


@pytest.mark.parametrize("edge_name", sorted(EDGES))
@FUZZ_SETTINGS
@given(data=st.data())
async def test_every_inbound_edge_answers_hostile_input_with_2xx_or_4xx(
    fuzz_bot: Bot, edge_name: str, data: st.DataObject
) -> None:
    """One app for all the examples of an edge: what earlier requests stored stays."""
    inbound = data.draw(EDGES[edge_name], label="request")
    await exchange(fuzz_bot, inbound)
