"""Request a gate from any CI job (`POST /api/v1/gates`), and read its status.

status, created = await request_gate(ctx, service=..., environment=..., version=...)
# raises InvalidRequest (answered 400) or Conflict (409) and changes nothing then
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from bot.logs import logged_ids
from bot.services import gate_requests
from bot.usecases.context import Context


async def request_gate(
    ctx: Context,
    *,
    service: str,
    environment: str,
    version: str,
    sha: str | None = None,
    requested_by: str | None = None,
    url: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Open (or find) the gate of a release; answers (its status, whether it was opened now)."""
    now = ctx.clock.now()

    def write(session: Session) -> tuple[dict[str, Any], bool]:
        result = gate_requests.request_gate(
            session,
            now=now,
            config=ctx.config,
            service=service,
            environment=environment,
            version=version,
            sha=sha,
            requested_by=requested_by,
            url=url,
        )
        if result.gate_id is None:
            status = gate_requests.ungated_status(
                service=service, environment=environment, version=version, sha=sha, note=result.note
            )
            return status, result.created
        found = gate_requests.gate_status(session, result.gate_id)
        assert found is not None
        return found, result.created

    status, created = await ctx.write(write)
    if created:
        ctx.wake()
    return status, created


@logged_ids("gate_id")
async def gate_status(ctx: Context, gate_id: int) -> dict[str, Any] | None:
    """The status of one gate as the API answers it, or None when there is no such gate."""
    return await ctx.read(lambda s: gate_requests.gate_status(s, gate_id))
