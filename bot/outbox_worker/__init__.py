"""The outbox worker: claims due outbox rows (`bot/services/outbox.py` is the queue) and
sends them through the ports, many messages at once and each in order.

| module       | what                                                                      |
|--------------|---------------------------------------------------------------------------|
| worker.py    | `OutboxWorker`: claims, lanes per key, leases and their renewal, settling |
| sends.py     | the handler of each kind of row, and posting to Slack exactly once        |
| limiter.py   | `SlackLimiter`: Retry-After per method, posts per channel, for all lanes  |
"""

from __future__ import annotations

from bot.outbox_worker.limiter import RateLimited, SlackLimiter
from bot.outbox_worker.worker import DEFAULT_CONCURRENCY, OutboxWorker

__all__ = ["DEFAULT_CONCURRENCY", "OutboxWorker", "RateLimited", "SlackLimiter"]
