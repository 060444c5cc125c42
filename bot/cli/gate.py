"""`releasebot gate request`: ask the running bot for an approval, from any CI job.

With `--wait` it polls the gate until it is decided: exit 0 approved, 1 rejected, expired,
superseded or still pending at `--timeout`, 2 on any error (unreachable, refused).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from bot.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_OK, say, warn
from bot.config import format_duration, parse_duration

GATES_PATH = "/api/v1/gates"
GATE_FINAL = frozenset({"approved", "rejected", "expired", "superseded"})
DEFAULT_API_URL = "http://localhost:8000"


class GateApiError(Exception):
    """The bot refused the call, or could not be reached in time: the CLI exits 2."""


class GateApiUnavailable(GateApiError):
    """A failure that may pass (no connection, 5xx, 429): polling keeps trying."""


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(value: str) -> timedelta:
    parsed = _duration(value)
    if parsed <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value!r}")
    return parsed


def _gate_call(
    client: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """One call to the gates API: (status code, JSON body), or GateApiError saying why not."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise GateApiUnavailable(f"cannot reach the bot at {client.base_url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = response.status_code
    if code >= 400:
        problem = body.get("error") or response.text[:200] or response.reason_phrase
        message = f"the bot answered {code}: {problem}"
        if code >= 500 or code == 429:
            raise GateApiUnavailable(message)
        raise GateApiError(message)
    return code, body


def _gate_decision(gate: dict[str, Any]) -> str:
    """`" by U0RM1: 1 of 1 approvals"`: who decided and why, when the gate is decided."""
    if gate.get("status") not in GATE_FINAL:
        return ""
    decided_by, reason = gate.get("decided_by"), gate.get("reason")
    return (f" by {decided_by}" if decided_by else "") + (f": {reason}" if reason else "")


def _gate_line(gate: dict[str, Any]) -> str:
    line = f"gate #{gate.get('id')}: {gate.get('status')}"
    if gate.get("status") == "pending" and gate.get("progress"):
        line += f" ({gate['progress']})"
    return line + _gate_decision(gate)


def wait_for_decision(
    client: httpx.Client,
    gate_id: int,
    *,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll GET /api/v1/gates/{id} every `interval` seconds until the gate is decided.

    Returns the last status seen: a final one, or a pending one when `timeout` seconds
    passed first. Failures that may pass (the bot restarting, a 502) are retried until the
    timeout; a refusal (401, 404) raises GateApiError at once, as does a timeout with no
    answer at all. `on_update` sees each status whose state or progress changed.
    """
    deadline = monotonic() + timeout
    last: dict[str, Any] | None = None
    problem = "no answer"
    while True:
        try:
            _, gate = _gate_call(client, "GET", f"{GATES_PATH}/{gate_id}")
        except GateApiUnavailable as exc:
            problem = str(exc)
            warn(f"warning: {problem}; trying again")
        else:
            seen = (gate.get("status"), gate.get("progress"), len(gate.get("approvals") or ()))
            before = (
                (last.get("status"), last.get("progress"), len(last.get("approvals") or ()))
                if last is not None
                else None
            )
            if on_update is not None and seen != before:
                on_update(gate)
            last = gate
            if gate.get("status") in GATE_FINAL:
                return gate
        remaining = deadline - monotonic()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
    if last is None:
        raise GateApiError(f"gave up on gate {gate_id}: {problem}")
    return last


def run_gate(
    args: argparse.Namespace,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """`gate request` over `client` (its base URL and bearer token already set).

    Exit 0 approved (or, without --wait, asked for), 1 rejected, expired, superseded or
    still pending when --timeout passed, 2 on any error (unreachable, 401, 400, ...).
    """
    payload: dict[str, str] = {
        "service": args.service,
        "environment": args.env,
        "version": args.version,
    }
    requested_by = (
        args.requested_by or os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN")
    )
    for key, value in (("sha", args.sha), ("url", args.url), ("requested_by", requested_by)):
        if value:
            payload[key] = value
    what = f"{args.service} {args.env} {args.version}"
    try:
        code, gate = _gate_call(client, "POST", GATES_PATH, json=payload)
        gate_id = gate.get("id")
        if gate_id is None:  # the environment has no gate: nothing to wait for
            say(f"{what}: {gate.get('status')} ({gate.get('reason') or 'no gate'})")
            return EXIT_OK if gate.get("status") == "approved" else EXIT_FAIL
        say(f"gate #{gate_id} {'opened' if code == 201 else 'found'} for {what}")
        say(_gate_line(gate))
        if args.wait and gate.get("status") not in GATE_FINAL:
            gate = wait_for_decision(
                client,
                int(gate_id),
                timeout=args.timeout.total_seconds(),
                interval=args.interval.total_seconds(),
                sleep=sleep,
                monotonic=monotonic,
                on_update=lambda g: say(_gate_line(g)),
            )
    except GateApiError as exc:
        warn(f"error: {exc}")
        return EXIT_ERROR
    status = gate.get("status")
    if status == "approved":
        say(f"approved: {what} may deploy")
        return EXIT_OK
    if status in GATE_FINAL:
        warn(f"not approved: gate #{gate_id} was {status}{_gate_decision(gate)}")
        return EXIT_FAIL
    if args.wait:
        warn(
            f"timed out after {format_duration(args.timeout)}: gate #{gate_id} is still {status}"
            + (f" ({gate['progress']})" if gate.get("progress") else "")
        )
        return EXIT_FAIL
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("RELEASEBOT_API_TOKEN")
    if not token:
        warn("no API token: pass --token or set RELEASEBOT_API_TOKEN")
        return EXIT_ERROR
    base_url = args.api_url or os.environ.get("RELEASEBOT_PUBLIC_URL") or DEFAULT_API_URL
    headers = {"authorization": f"Bearer {token}", "user-agent": "releasebot-cli"}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=30.0) as client:
        return run_gate(args, client)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate_cmd = commands.add_parser("gate", help="ask the bot for an approval from any CI job")
    gate_sub = gate_cmd.add_subparsers(dest="action", required=True)
    gate_request = gate_sub.add_parser(
        "request",
        help="open (or find) the gate of a release; --wait for the decision",
        description="Asks the running bot (POST /api/v1/gates) for an approval. With --wait, "
        "exits 0 approved, 1 rejected/expired/superseded/timed out, 2 on any error.",
    )
    gate_request.add_argument("--service", required=True)
    gate_request.add_argument("--env", required=True, help="environment, e.g. production")
    gate_request.add_argument("--version", required=True, help="the version to deploy")
    gate_request.add_argument("--sha", help="full commit sha (else the version names it)")
    gate_request.add_argument("--url", help="CI run link for the release message")
    gate_request.add_argument(
        "--requested-by", help="who asks (default: $GITHUB_ACTOR or $GITLAB_USER_LOGIN)"
    )
    gate_request.add_argument("--wait", action="store_true", help="wait for the decision")
    gate_request.add_argument(
        "--timeout", type=_duration, default=timedelta(hours=4), help="with --wait (4h)"
    )
    gate_request.add_argument(
        "--interval", type=_positive_duration, default=timedelta(seconds=10), help="poll (10s)"
    )
    gate_request.add_argument(
        "--api-url", help=f"the bot (default: $RELEASEBOT_PUBLIC_URL or {DEFAULT_API_URL})"
    )
    gate_request.add_argument("--token", help="API token (default: $RELEASEBOT_API_TOKEN)")
    gate_request.set_defaults(func=cmd_gate)
