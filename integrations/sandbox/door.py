"""The sandbox's door: in the sandbox anyone can act as anyone, approvals included, so it
answers only to whom the app says it may (docs/sandbox.md, "Who may use the sandbox").

The rule itself is the app's (`handlers/sandbox_door.py`): with a dashboard token, the token;
without one, loopback clients only unless `RELEASEBOT_SANDBOX_PUBLIC=1`. This module holds
what the sandbox's routes need to apply it: `guarded(endpoint, door)`, the answer to a
client the door turns away, the bot's own token for the sandbox's Web API, and the start-up
warning when the sandbox can be reached from other machines.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

__all__ = [
    "Door",
    "guarded",
    "is_loopback",
    "loopback_only",
    "new_bot_token",
    "reach_warning",
]

Door = Callable[[Request], Awaitable[Response | None]]  # None: come in
Endpoint = Callable[[Request], Awaitable[Response]]

LOOPBACK_NAMES = frozenset({"localhost"})


def new_bot_token() -> str:
    """The token the bot's own Web API calls to the sandbox carry: new in every process, so
    only the bot itself gets through the door of `/sandbox/api` without the dashboard token."""
    return "xoxb-sandbox-" + secrets.token_hex(16)


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a client address or a bind address) is this machine only."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def guarded(endpoint: Endpoint, door: Door | None) -> Endpoint:
    """`endpoint`, answered only once `door` lets the request in."""
    if door is None:
        return endpoint

    async def behind_the_door(request: Request) -> Response:
        refusal = await door(request)
        return refusal if refusal is not None else await endpoint(request)

    return behind_the_door


def loopback_only() -> Response:
    """The answer to a client on another machine when the sandbox is not open to it."""
    return PlainTextResponse(
        "The sandbox answers only on this machine (loopback): in it anyone can act as anyone, "
        "approvals included. Set RELEASEBOT_DASHBOARD_TOKEN to let others in with the "
        "dashboard's token, or RELEASEBOT_SANDBOX_PUBLIC=1 to open it to everyone who can "
        "reach this server.\n",
        status_code=403,
    )


def reach_warning(host: str, *, sandbox_on: bool, token_set: bool, public: bool) -> str | None:
    """What start-up warns when the server listens beyond loopback with the sandbox on."""
    if not sandbox_on or is_loopback(host):
        return None
    where = f"the sandbox (/sandbox) is reachable from other machines on {host}"
    if token_set:
        return f"{where}; it asks for RELEASEBOT_DASHBOARD_TOKEN, as the dashboard does"
    if public:
        return (
            f"{where} and RELEASEBOT_SANDBOX_PUBLIC=1 opens it to anyone: whoever reaches it "
            "can act as anyone, approvals included"
        )
    return (
        f"releasebot listens on {host} with the sandbox on: the sandbox answers only loopback "
        "clients and refuses the others (set RELEASEBOT_DASHBOARD_TOKEN to let them in)"
    )
