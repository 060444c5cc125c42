"""Requests first: the background work of a process gives way to the requests it answers.

The applier and the outbox worker share the process with the HTTP requests: its event loop,
its CPU and Python's one lock. Every slice of CPU a batch takes is a slice a request waits
for, and a request kept waiting stores its delivery later, which made the work look idle
and take more: without a rule, a burst arriving on top of a backlog was answered at a
fifteenth of its usual rate. So, while requests arrive, each kind of background work:

- holds back for a while (`longest`, two seconds from its first hold), taking a step only
  in a quiet moment (no request in flight, none stored for `quiet`): a burst is answered
  at the speed of storing, and applied right after it. Once the requests have been quiet
  for as long, or the backlog is worked off in a quiet moment, the next burst is held
  back anew;
- past that, takes turns: after each step (kept small) it waits as long as the step took
  (`longest_pause` at most), so the requests keep about half of the process and the work
  keeps moving. A sustained load starves neither.

`Arrivals` is the signal, one per process: the POST requests being answered now (counted
by the HTTP middleware: webhooks, Slack's events and clicks over HTTP, the gate API; one
begun more than `longest` ago no longer counts) and the last delivery stored, here or, as
a `--role worker` learns from the database, by another replica. Each kind of work keeps
its own `RequestsFirst`. Times are `time.monotonic()` seconds, passed in.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

QUIET_SECONDS = 0.02  # no request in flight and none stored for this long: a quiet moment
LONGEST_HOLD_SECONDS = 2.0  # held back this long at most, then taking turns
LONGEST_PAUSE_SECONDS = 0.1  # a turn's pause at most, however long its step waited


class Arrivals:
    """Requests arriving, as the background work of this process sees them."""

    def __init__(self) -> None:
        self._started: dict[int, float] = {}  # POST requests being answered: when each began
        self._tokens = itertools.count()
        self._last_stored = float("-inf")

    @property
    def in_flight(self) -> int:
        """POST requests being answered now."""
        return len(self._started)

    def started(self, now: float) -> int:
        """A request began at `now`; give the token back to `finished`."""
        token = next(self._tokens)
        self._started[token] = now
        return token

    def finished(self, token: int) -> None:
        self._started.pop(token, None)

    def stored(self, now: float) -> None:
        """A delivery was stored at `now` (here, or by another replica)."""
        self._last_stored = now

    def busy(
        self, now: float, *, quiet: float = QUIET_SECONDS, stale: float = LONGEST_HOLD_SECONDS
    ) -> bool:
        """Whether a request is being answered, or a delivery was stored less than `quiet`
        ago. A request begun more than `stale` ago no longer counts: a client that sends
        its headers and then nothing holds nothing back."""
        if now - self._last_stored < quiet:
            return True
        return any(now - began < stale for began in self._started.values())


class RequestsFirst:
    """When one kind of background work holds back for the requests."""

    def __init__(
        self,
        arrivals: Arrivals | None = None,
        *,
        quiet: float = QUIET_SECONDS,
        longest: float = LONGEST_HOLD_SECONDS,
        longest_pause: float = LONGEST_PAUSE_SECONDS,
    ) -> None:
        self.arrivals = arrivals or Arrivals()
        self._quiet = quiet
        self._longest = longest
        self._longest_pause = longest_pause
        self._held_since: float | None = None
        self._turn_at = float("-inf")  # past the longest hold: the next step's turn
        self._last_busy = float("-inf")  # when a step last found requests arriving

    def busy(self, now: float) -> bool:
        """Whether requests are arriving at `now`: the next step is kept small."""
        return self.arrivals.busy(now, quiet=self._quiet, stale=self._longest)

    def requested(self, now: float) -> bool:
        """Whether a request is being answered at `now` (deliveries stored aside)."""
        return self.arrivals.busy(now, quiet=0.0, stale=self._longest)

    def hold(self, now: float) -> bool:
        """Whether the next step waits at `now`: for a quiet moment, while the burst has
        been held back less than `longest`; after that, until its turn. Requests quiet for
        `longest` end the hold: the next burst is held back anew."""
        if not self.busy(now):
            return False
        if self._held_since is None or now - self._last_busy >= self._longest:
            self._held_since = now  # a new burst
        self._last_busy = now
        return now - self._held_since < self._longest or now < self._turn_at

    async def wait_turn(
        self, *, go_on: Callable[[], bool], look: Callable[[], Awaitable[object]] | None = None
    ) -> float:
        """Wait as long as `hold` says, looking again every `quiet` seconds (after `look`,
        when given: a worker reading what other replicas stored) while `go_on()`; the
        seconds it held back (0: it did not)."""
        began: float | None = None
        while go_on():
            if look is not None:
                await look()
            now = time.monotonic()
            if not self.hold(now):
                break
            began = now if began is None else began
            await asyncio.sleep(self._quiet)
        return 0.0 if began is None else time.monotonic() - began

    def ran(self, started: float, ended: float) -> None:
        """A step ran from `started` to `ended`: while requests arrive, they get as long
        again before the next one (`longest_pause` at most: a step that waited on a lock
        or on Slack did not take the process from them all that time)."""
        self._turn_at = ended + min(ended - started, self._longest_pause)

    def drained(self, now: float) -> None:
        """The backlog was worked off at `now`: unless requests are still arriving (then
        the hold goes on, and the turns with it), the next burst is held back anew."""
        if not self.busy(now):
            self._held_since = None
            self._turn_at = float("-inf")
