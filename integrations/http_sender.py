"""What the outbox senders that call a platform once per attempt share: the feature-flag
platforms (`integrations.flags`) and the dashboards that take deploy markers
(`integrations.markers`).

    class FlagSenders(OutboxSenders[Ledger]):
        kind = FlagChange.KIND
        async def _send(self, row, batch): ...   # reads self._config, self._ledger
    response = await send_once(client, "PATCH", url, platform="unleash", secret=token, ...)

`OutboxSenders` holds what every sender is given (the config, where secrets are read, the
ledger of receipts, the clock), maps its outbox kind to its `_send`, reads a secret from
the environment variable the config names, and builds the HTTP client (`transport`
replaces the network in tests).

`send_once` sends one request and turns an answer that is not a success into
`DeliveryFailed` for the outbox, which does the retrying:

- network errors, 429 (with its `Retry-After`) and 5xx: retryable; the outbox tries again
  with backoff;
- every other 4xx (a refused token, a flag or dashboard that does not exist): given up on
  at once, with the platform's own message. The secret is blanked out of every reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from bot.config import Config
from bot.domain.errors import DeliveryFailed
from bot.ports import Clock
from integrations.http import Explain, make_client, redact, retry_after_seconds

Handler = Callable[[Any, Any], Awaitable[None]]
"""An outbox sender: called with the outbox row and its batch."""

LedgerT = TypeVar("LedgerT")

MESSAGE_CHARS = 200


class OutboxSenders(ABC, Generic[LedgerT]):
    """Sends the outbox rows of one kind: `handlers()` maps `kind` to `_send`."""

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        config: Config,
        secrets: Callable[[str], str | None],
        ledger: LedgerT,
        clock: Clock,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._ledger = ledger
        self._clock = clock
        self._transport: httpx.AsyncBaseTransport | None = None

    def handlers(self, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Handler]:
        """The outbox kind and its sender; `transport` replaces the network (tests)."""
        self._transport = transport
        return {self.kind: self._send}

    @abstractmethod
    async def _send(self, row: Any, _batch: object) -> None:
        """Send one outbox row and record its receipt."""

    def _secret(self, variable: str, platform: str) -> str:
        """The value of the environment variable `variable`; a change that cannot be sent
        (given up on, not retried) when it is unset or empty."""
        value = self._secrets(variable)
        if not value:
            raise DeliveryFailed(f"{variable} is not set: cannot reach {platform}", retryable=False)
        return value

    def _client(self) -> httpx.AsyncClient:
        """A client with no base URL: each platform's URL comes from the config."""
        return make_client("", transport=self._transport)


async def send_once(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    platform: str,
    secret: str,
    now: float,
    explain: Explain,
    headers: dict[str, str],
    content: bytes | None = None,
    json: Any = None,
) -> httpx.Response:
    """The successful answer of one request, or DeliveryFailed saying why not (module doc).

    `explain` reads the platform's words from a refusal; `now` (epoch seconds) reads
    `Retry-After`.
    """
    path = httpx.URL(url).path
    try:
        response = await client.request(method, url, content=content, json=json, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(
            f"{platform}: {method} {path}: {type(exc).__name__}", retryable=True
        ) from exc
    if response.is_success:
        return response
    status = response.status_code
    detail = redact(explain(response), [secret])
    reason = f"{platform}: {method} {path}: {status}" + (f" {detail}" if detail else "")
    if status == 429:
        wait = retry_after_seconds(response, now=now)
        raise DeliveryFailed(reason, retryable=True, retry_after=wait)
    raise DeliveryFailed(reason, retryable=status >= 500)


def platform_message(response: httpx.Response, list_key: str) -> str:
    """The platform's words for a refusal: the body's `message`, else the messages listed
    under `list_key`; the status's reason phrase for a body that is not JSON (an HTML
    error page from a proxy)."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("message"), str):
        return str(body["message"])[:MESSAGE_CHARS]
    listed = body.get(list_key)
    if isinstance(listed, list):
        words = (item.get("message") if isinstance(item, dict) else item for item in listed)
        return "; ".join(str(word) for word in words)[:MESSAGE_CHARS]
    return ""
