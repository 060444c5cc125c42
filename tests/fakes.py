"""Test doubles that satisfy bot.ports, recording what happened as data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.errors import DeliveryFailed
from bot.ports import Commit, Comparison, FileChange


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 17, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


class FakeScm:
    """A code host's compare API: answers from a table of comparisons, records every call."""

    def __init__(self) -> None:
        self.comparisons: dict[tuple[str | None, str], Comparison] = {}
        self.calls: list[tuple[str, str | None, str]] = []
        self.failures: list[DeliveryFailed] = []

    def add(self, *, base: str | None, head: str, comparison: Comparison) -> None:
        self.comparisons[(base, head)] = comparison

    async def compare(self, *, repo: str, base: str | None, head: str) -> Comparison:
        self.calls.append((repo, base, head))
        if self.failures:
            raise self.failures.pop(0)
        try:
            return self.comparisons[(base, head)]
        except KeyError:
            raise DeliveryFailed(f"compare {base}...{head}: 404", retryable=False) from None


def commits(count: int, *, message: str = "Change {i}", author: str = "Dev One") -> Comparison:
    start = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    made = tuple(
        Commit(
            sha=f"{i + 1:040x}",
            message=message.format(i=i),
            author=author,
            author_login="dev-one",
            authored_at=start + timedelta(minutes=i),
            url=f"https://github.com/acme/checkout/commit/{i + 1:040x}",
        )
        for i in range(count)
    )
    files = (FileChange(path="app/main.py", additions=12 * count, deletions=3 * count),)
    return Comparison(
        commits=made,
        files=files,
        total_commits=count,
        truncated=False,
        url="https://github.com/acme/checkout/compare/a...b",
    )
