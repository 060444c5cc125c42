"""The releasebot error tree.

ReleasebotError
 ├── ConfigError            the configuration is invalid (carries every problem with its path)
 ├── InvalidRequest         a caller sent something unusable: a bad field, an unknown name
 │    │                     (also a ValueError; HTTP answers 400; carries `field` when known)
 │    └── UnknownAction     an operation name no use case knows (carries `action`)
 ├── NotFound               the release, gate or deployment named does not exist
 │                          (also a LookupError; HTTP answers 404; carries `kind` and `key`)
 ├── PermissionDenied       this person may not do this (HTTP answers 403; carries `reason`)
 ├── Conflict               the request is sound but the current state forbids it (HTTP 409)
 │    ├── IllegalTransition a deployment was asked to move where the state table forbids
 │    └── ConcurrentUpdate  another writer changed the row first; the caller re-reads and retries
 └── DeliveryFailed         an outside API refused or failed a call (Slack, pager, deployer)
      carries `retryable` and, when the API said so, `retry_after` seconds

Errors a caller, a payload, a config file or the outside world can cause hang from
`ReleasebotError`, so an edge (HTTP route, Slack handler, CLI command) can answer each by
name and a last-resort guard can tell ours from a bug. Misuse by the code itself (a naive
datetime, a negative count handed to a constructor) stays a plain `ValueError` or
`TypeError`: no edge should turn it into an answer.

`InvalidRequest` is also a `ValueError` and `NotFound` also a `LookupError`, so code that
catches the built-in keeps catching them. Beside this tree: `SettingsError` (bot.settings,
environment variables that cannot work together), `PayloadError` and `CredentialsError`
(integrations.errors), all `ReleasebotError`s.

Everything else is caught by name. The last-resort guards, each of which logs the error and
keeps a promise that would otherwise break, are these and no others:
- the outbox worker's loop and one row's send (`bot/outbox_worker.py`): the worker stays
  alive and the row stays pending for a retry;
- a check runner's crash (`bot/usecases/verify.py`): the run is recorded as failed instead of
  staying claimed;
- readiness (`bot/services/health.py`): `/readyz` answers "database unreachable" instead of
  a 500;
- the group-commit writer (`bot/store/db.py`): each caller's future gets its own exception,
  and the writer thread never dies;
- the slash command's answer (`handlers/slack/commands.py`): the person gets an answer that
  something failed instead of silence;
- closing the deployers' clients (`integrations/deployers/registry.py`): the rest are closed,
  then the first error is raised again;
- the Socket Mode connection's retries (`bot/app.py`): any failure to connect is retried.
"""

from __future__ import annotations

__all__ = [
    "ConcurrentUpdate",
    "ConfigError",
    "Conflict",
    "DeliveryFailed",
    "IllegalTransition",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "ReleasebotError",
    "UnknownAction",
]


class ReleasebotError(Exception):
    """Base of every error releasebot raises on purpose."""


class ConfigError(ReleasebotError):
    """The configuration is invalid; `problems` lists each as `"<path>: <message>"`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class InvalidRequest(ReleasebotError, ValueError):
    """A caller's input cannot be used: `"sha must be a full commit sha (40 hex characters)"`.

    `field` names the offending input (`"sha"`, `"days"`) when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownAction(InvalidRequest):
    """An operation was asked for by a name no use case knows: `"unknown action 'launch'"`."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"unknown action {action!r}", field="action")


class NotFound(ReleasebotError, LookupError):
    """What was named does not exist: `NotFound("release", 42)` says "release 42 not found"."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} not found")


class PermissionDenied(ReleasebotError):
    """This person may not do this; `reason` says why in plain English, for them to read."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Conflict(ReleasebotError):
    """The request is sound but the current state of things forbids it."""


class IllegalTransition(Conflict):
    """A deployment cannot move from `current` to `target` (the state table forbids it)."""

    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"a deployment cannot move from {current!r} to {target!r}")


class ConcurrentUpdate(Conflict):
    """The row's version changed between read and write."""


class DeliveryFailed(ReleasebotError):
    """An outside API refused or failed a call.

    `retryable` for network errors, rate limits and 5xx; `retry_after` seconds when the API
    said how long to wait; `status` the HTTP status, when there was one.
    """

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
