"""Who may use the sandbox, where anyone can act as anyone, approvals included.

With `RELEASEBOT_DASHBOARD_TOKEN` set, the sandbox asks for it exactly as the dashboard does
(`Authorization: Bearer`, or the cookie a browser gets from `?token=`). Without one, it answers
loopback clients only, unless `RELEASEBOT_SANDBOX_PUBLIC=1` opens it to everyone who can reach
the server. Behind a reverse proxy on the same machine, uvicorn takes the client's address from
`X-Forwarded-For` (it trusts 127.0.0.1 by default), so remote people stay remote.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bot.usecases import UseCases
from handlers.dashboard import require_token
from integrations.sandbox.door import is_loopback, loopback_only


async def sandbox_door(request: Request) -> Response | None:
    """None when the request may use the sandbox; else the answer to give instead."""
    usecases: UseCases = request.state.usecases
    settings = usecases.settings
    token = settings.dashboard_token
    if token is not None and token.get_secret_value():
        return require_token(request)
    if settings.sandbox_public:
        return None
    client = request.client
    return None if is_loopback(client.host if client else None) else loopback_only()
