"""What every use case runs with, and the three things each one does the same way.

    ctx = Context(db=..., config=..., settings=..., clock=..., directory=..., metrics=...,
                  wake=worker.wake)
    await ctx.write(lambda session: ...)   # one transaction, in a worker thread
    await ctx.read(lambda session: ...)    # a read-only session, in a worker thread
    await ctx.groups_of(user_id, principals)   # the user groups among principals they are in

A use case owns its transaction: it calls `write` once (or `read`), and wakes the outbox
worker (`ctx.wake()`) when that transaction queued something to send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session

from bot.config import Config
from bot.metrics import Metrics
from bot.ports import Clock, ScmClient, SlackDirectory
from bot.settings import Settings
from bot.store.db import Database
from bot.store.spool import Spool

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    db: Database
    config: Config
    settings: Settings
    clock: Clock
    directory: SlackDirectory
    metrics: Metrics
    wake: Callable[[], None]
    migrations_head: str | None = None
    # Stored deliveries: wake the applier, or (apply_inline) apply each before answering.
    wake_applier: Callable[[], None] = lambda: None
    apply_inline: bool = False
    # Where deliveries wait while the database cannot be reached (None: answered 503).
    spool: Spool | None = None
    wake_spool: Callable[[], None] = lambda: None
    # Links to the outside that readiness reports on (name -> its state now: {"ok": ...}),
    # filled in by the composition root once they exist (Slack's Socket Mode).
    links: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # The code hosts by provider (github, gitlab): a deploy from chat resolves its ref there.
    scm: Mapping[str, ScmClient] = field(default_factory=dict)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one write transaction (retried on a conflict) in a worker thread."""
        return await asyncio.to_thread(self.db.write, fn)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` on a read-only session in a worker thread."""

        def run() -> T:
            with self.db.read() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def groups_of(self, user_id: str, principals: Iterable[str]) -> frozenset[str]:
        """The Slack user groups among `principals` this user is in (cached by the directory);
        principals that are user ids are not groups and are left to the caller."""
        found = set()
        for group in sorted({p for p in principals if p.startswith("S")}):
            if user_id in await self.directory.group_members(group):
                found.add(group)
        return frozenset(found)

    async def members_of(self, principals: Iterable[str]) -> dict[str, frozenset[str]]:
        """Each user group among `principals`, with its members."""
        groups = sorted({p for p in principals if p.startswith("S")})
        return {group: await self.directory.group_members(group) for group in groups}
