"""The releasebot error tree.

ReleasebotError
 ├── ConfigError            the YAML config is invalid (carries every problem with its path)
 ├── IllegalTransition      a deployment was asked to move where the state table forbids
 ├── ConcurrentUpdate       another writer changed the row first; the caller re-reads and retries
 └── DeliveryFailed         an outside API refused or failed a call (Slack, pager, deployer)
      carries `retryable` and, when the API said so, `retry_after` seconds
"""

from __future__ import annotations


class ReleasebotError(Exception):
    """Base of every error releasebot raises on purpose."""


class ConfigError(ReleasebotError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class IllegalTransition(ReleasebotError):
    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"a deployment cannot move from {current!r} to {target!r}")


class ConcurrentUpdate(ReleasebotError):
    """The row's version changed between read and write."""


class DeliveryFailed(ReleasebotError):
    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        super().__init__(reason)


class InvalidRequest(ReleasebotError, ValueError):
    """A caller asked for something malformed or impossible (answered 400, never retried)."""


class Conflict(ReleasebotError):
    """What was asked clashes with the state things are in (answered 409)."""
