"""The lanes' writes, in groups: one transaction for every write asked for meanwhile.

Each row a lane sends takes at least two writes: marked attempted before its call goes out
(the lease checked and extended), and settled after (sent with its receipts, due again, or
dead); some sends write what they learnt in between (a posted message's ts, a risk score, a
deployer's answer). With many lanes in flight those writes queue behind one another; here
every write asked for while a group is being written joins the next group, written in one
transaction, the attempted and the sent marks of one claim in two statements each
(`outbox.begin_attempts`, `outbox.mark_sent_many`). A lane still awaits each of its writes
before it goes on, so its rows keep their order and nothing goes out before its row is
marked attempted.

A group that fails is written again one write at a time, so one bad write fails only its
own lane; a write alone that fails is the lane's error, as it would be on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlmodel import Session

from bot import receipts
from bot.ports import Clock
from bot.services import outbox
from bot.store.db import Database

log = logging.getLogger("bot.outbox_worker")

T = TypeVar("T")


BEGIN = "begin"  # mark the row attempted, its lease extended
SENT = "sent"  # mark it sent, its receipts audited
WRITE = "write"  # run a write of its own (a row due again or dead, what a send learnt)


@dataclass
class _Asked:
    what: str
    row: outbox.Claimed | None = None  # BEGIN's and SENT's
    write: Callable[[Session], Any] | None = None  # WRITE's
    receipts: list[receipts.Receipt] = field(default_factory=list)  # SENT's
    at: datetime | None = None  # SENT's: when the platforms answered
    answer: asyncio.Future[Any] = field(repr=False, default_factory=asyncio.Future)


class LaneWrites:
    def __init__(self, db: Database, clock: Clock, lease: timedelta) -> None:
        self._db = db
        self._clock = clock
        self._lease = lease
        self._waiting: list[_Asked] = []
        self._writing: asyncio.Task[None] | None = None

    async def begin(self, row: outbox.Claimed) -> outbox.Attempt | None:
        """Mark `row` attempted, its lease extended; None when its claim no longer holds it."""
        answer: outbox.Attempt | None = await self._ask(_Asked(BEGIN, row=row))
        return answer

    async def sent(self, row: outbox.Claimed, found: list[receipts.Receipt], at: datetime) -> bool:
        """Mark `row` sent and audit what the platforms answered (`found`, at `at`); False
        when its claim no longer holds it (its receipts are audited all the same, since what
        they say happened)."""
        return bool(await self._ask(_Asked(SENT, row=row, receipts=found, at=at)))

    async def write(self, write: Callable[[Session], T]) -> T:
        """Run `write` in the next group; what it returned."""
        answer: T = await self._ask(_Asked(WRITE, write=write))
        return answer

    async def _ask(self, mark: _Asked) -> Any:
        self._waiting.append(mark)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_groups(), name="outbox-writes")
        return await mark.answer

    async def _write_groups(self) -> None:
        group: list[_Asked] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._write(group)
        except BaseException:  # cancelled with the loop: no lane waits for an answer forever
            for mark in (*group, *self._waiting):
                mark.answer.cancel()
            self._waiting = []
            raise
        finally:
            self._writing = None

    async def _write(self, group: list[_Asked]) -> None:
        now = self._clock.now()
        try:
            answers = await asyncio.to_thread(
                self._db.write, partial(_write_group, group, now=now, lease=self._lease)
            )
        except Exception as exc:
            if len(group) == 1:
                _answer(group[0], exc)
                return
            log.warning("a group of %d outbox writes failed; writing them one by one", len(group))
            for mark in group:
                try:
                    (answer,) = await asyncio.to_thread(
                        self._db.write, partial(_write_group, [mark], now=now, lease=self._lease)
                    )
                except Exception as alone:
                    answer = alone
                _answer(mark, answer)
            return
        for mark, answer in zip(group, answers, strict=True):
            _answer(mark, answer)


def _answer(mark: _Asked, answer: object) -> None:
    if mark.answer.done():
        return
    if isinstance(answer, BaseException):
        mark.answer.set_exception(answer)
    else:
        mark.answer.set_result(answer)


def _write_group(
    group: list[_Asked], session: Session, *, now: datetime, lease: timedelta
) -> list[object]:
    """Every mark of `group` in this transaction; their answers in the same order."""
    begun: dict[int, outbox.Attempt] = {}
    for token, row_ids in _by_token(group, BEGIN).items():
        begun |= outbox.begin_attempts(session, row_ids=row_ids, token=token, now=now, lease=lease)
    for mark in group:
        if mark.what == SENT:
            assert mark.row is not None
            receipts.audit(session, mark.row, mark.receipts, now=mark.at)
    marked: set[int] = set()
    for token, row_ids in _by_token(group, SENT).items():
        marked |= outbox.mark_sent_many(session, row_ids=row_ids, now=now, token=token)
    answers: list[object] = []
    for mark in group:
        if mark.write is not None:
            answers.append(mark.write(session))
        else:
            assert mark.row is not None
            row_id = mark.row.id
            answers.append(begun.get(row_id) if mark.what == BEGIN else row_id in marked)
    return answers


def _by_token(group: list[_Asked], what: str) -> dict[str | None, list[int]]:
    rows: dict[str | None, list[int]] = defaultdict(list)
    for mark in group:
        if mark.what == what and mark.row is not None:
            rows[mark.row.lease_token].append(mark.row.id)
    return rows
