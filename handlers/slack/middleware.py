"""Bolt listener middleware shared by the listeners."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


async def ack_first(ack: Any, next_: Callable[[], Awaitable[None]]) -> None:
    """For listeners whose first step is a plain `await ack()`: acknowledge here instead.

    Without process_before_response, Bolt starts the listener as a task and then polls every
    10 ms for its ack before answering Slack; acknowledged already, it answers at once, so
    the listener's work (and that of other clicks arriving together) no longer runs ahead
    of the answer. The listener's own `ack()` stays: a second plain ack sets the same
    answer, which is sent already (or, with process_before_response, sent after it).
    """
    await ack()
    await next_()


ACK_FIRST = [ack_first]
