"""The errors the integrations raise, all in releasebot's error tree (`bot.domain.errors`).

ReleasebotError
 ├── DeliveryFailed       an outside API refused or failed a call: every client, deployer,
 │                        pager and Slack sender raises it (`retryable`, `retry_after`, `status`)
 ├── PayloadError         an inbound webhook payload lacks a field or has the wrong shape
 │                        (also a ValueError; the webhook handlers answer it with 400)
 └── CredentialsError     an integration's credentials from the environment are missing,
                          incomplete or unreadable (also a ValueError; found at start-up)

Callers catch these by name. Inside the integrations, exceptions of the libraries are caught
by their own classes (`httpx.TransportError`, `SlackApiError`, `aiohttp.ClientError`, ...) and
turned into `DeliveryFailed`; a post-deploy check turns the same classes into a failed
`CheckResult` instead, since a check never raises for what its target does. The one place
that catches any exception is `integrations.deployers.registry.close_all`, which closes every
deployer even when one fails to close and then raises the first failure again.
"""

from __future__ import annotations

from bot.domain.errors import DeliveryFailed, ReleasebotError

__all__ = ["CredentialsError", "DeliveryFailed", "PayloadError"]


class PayloadError(ReleasebotError, ValueError):
    """The payload lacks a field we need, or the field has the wrong shape (answered 400)."""

    def __init__(self, field: str, problem: str = "is required") -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")


class CredentialsError(ReleasebotError, ValueError):
    """An integration's credentials are missing, incomplete or unreadable.

    The message names the environment variables or the credential to fix, never its value.
    """
