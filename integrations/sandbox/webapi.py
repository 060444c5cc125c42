"""An in-memory fake of the Slack Web API, served as a Starlette app.

Tests serve it on loopback and point a real `AsyncWebClient` at it; the app mounts the same
object as the local Slack sandbox when no Slack token is configured.

    fake = FakeSlackWebApi()
    with serve_in_thread(fake.app()) as url:
        client = AsyncWebClient(token="xoxb-test", base_url=f"{url}/api/")
        await client.chat_postMessage(channel="#releases", text="v42 is rolling out")
    assert fake.messages("#releases")[0]["text"] == "v42 is rolling out"

It answers the way Slack does:

- `POST /api/<method>` or `POST /<method>` (GET too, as slack_sdk uses it for reads), with a
  JSON or form-encoded body; JSON fields of form bodies (`blocks`, `view`, ...) are decoded.
- Logic errors are HTTP 200 `{"ok": false, "error": "<code>"}`; unknown methods give
  `unknown_method`; a missing token `not_authed`, a non-bot token `invalid_auth`.
- `fail_next()` injects rate limits (HTTP 429 + Retry-After), 5xx answers or logic errors;
  `lose_next_answer()` carries a call out (the post is stored) and then answers with a
  gateway error, as when Slack's answer is lost; `hold_answers()` keeps the answers of
  successful calls to a method until `release_answers()` (a process killed meanwhile never
  learns its post was stored).
- A channel named `#name` exists from the first post or edit naming it (or `add_channels`),
  with an id (`C` and ten hex digits, the same for a name on every run); `chat.postMessage`
  and `chat.update` take the name or the id and answer with the id,
  `conversations.history` and `conversations.replies` take the id only
  (`channel_not_found` for a name, as in Slack), and `conversations.list` lists these
  channels (`types`, `limit` up to 1000, `cursor`).
- `chat.postMessage` keeps message `metadata`; `conversations.history` and
  `conversations.replies` return it with `include_all_metadata`, within `oldest`/`latest`,
  a page (`limit`, `cursor`) at a time.
- `views.publish` keeps the latest App Home view of each user (`home_view(user)`).
- `POST /response/<token>` stands in for a slash command's or an interaction's
  `response_url`: put `<base url>/response/<any token>` in a payload and what the app sends
  back to it is recorded (`responses(token)`), as Slack would show it.

Every call is recorded, failed ones included, before it is answered. State is guarded by a
lock, because uvicorn serves the fake from one thread while tests read it from another.
The state lives in `store.py`, the methods in `methods.py`, request parsing in `params.py`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable
from functools import partial

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integrations.sandbox.methods import METHODS, name_channel
from integrations.sandbox.params import MAX_MESSAGE_BLOCKS, bearer_token, blocks_of, read_params
from integrations.sandbox.store import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_EPOCH,
    TEAM_ID,
    ApiError,
    Fault,
    Json,
    RecordedCall,
    SlackState,
)

HOLD_SECONDS = 60.0
"""The longest an answer is held back by `hold_answers`."""

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "FakeSlackWebApi",
    "RecordedCall",
    "TEAM_ID",
]


class FakeSlackWebApi:
    """The Slack Web API methods releasebot uses, kept in memory.

    `users` feeds `users.info` (id -> user fields) and `usergroups` feeds
    `usergroups.users.list` (subteam id -> user ids). `clock` returns epoch seconds and only
    seeds message timestamps, which always increase by at least 100 µs per message.
    """

    def __init__(
        self,
        *,
        users: dict[str, Json] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        clock: Callable[[], float] = lambda: DEFAULT_EPOCH,
    ) -> None:
        self._lock = threading.Lock()
        self._state = SlackState(users=users, usergroups=usergroups, clock=clock)
        self._changed = threading.Condition(self._lock)
        self._held_methods: set[str] = set()
        self._held_answers = 0  # answers of stored calls being held back right now
        self._release = threading.Event()

    # -- serving -------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """A Starlette app answering `/api/<method>` and `/<method>` from this fake's state."""
        methods = ["GET", "POST"]
        return Starlette(
            routes=[
                Route("/response/{token}", self._response_url, methods=["POST"]),
                Route("/api/{method}", self._endpoint, methods=methods),
                Route("/{method}", self._endpoint, methods=methods),
            ]
        )

    async def _endpoint(self, request: Request) -> Response:
        method: str = request.path_params["method"]
        params, parse_error = await read_params(request)
        body_token = params.pop("token", None)
        token = bearer_token(request.headers.get("authorization"))
        if token is None and isinstance(body_token, str) and body_token:
            token = body_token
        with self._lock:
            self._state.calls.append(RecordedCall(method, copy.deepcopy(params), token))
            status, body, headers = self._answer(method, params, token, parse_error)
            held = status == 200 and body.get("ok") is True and method in self._held_methods
            if held:
                self._held_answers += 1
            self._changed.notify_all()
        if held:
            await asyncio.to_thread(self._release.wait, HOLD_SECONDS)
            with self._lock:
                self._held_answers -= 1
        return JSONResponse(body, status_code=status, headers=headers)

    async def _response_url(self, request: Request) -> Response:
        """What an app posts to a `response_url`: JSON (or a form `payload=`), recorded."""
        token: str = request.path_params["token"]
        params, parse_error = await read_params(request)
        if isinstance(params.get("payload"), str):
            try:
                params = json.loads(params["payload"])
            except ValueError:
                parse_error = "invalid_payload"
        if parse_error is not None or not isinstance(params, dict):
            return Response("invalid_payload", status_code=400, media_type="text/plain")
        with self._lock:
            self._state.responses.append({"token": token, "body": copy.deepcopy(params)})
        if params.get("blocks") is not None:
            try:
                blocks_of(params.get("blocks"), limit=MAX_MESSAGE_BLOCKS, error="invalid_blocks")
            except ApiError as error:
                return Response(error.error, status_code=400, media_type="text/plain")
        return Response("ok", media_type="text/plain")

    def _answer(
        self, method: str, params: Json, token: str | None, parse_error: str | None
    ) -> tuple[int, Json, dict[str, str]]:
        handler = METHODS.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if token is None:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if not token.startswith("xoxb-"):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        name_channel(self._state, method, params)
        fault = self._state.take_fault(method)
        if fault is not None and not fault.after:
            return fault.status, {"ok": False, "error": fault.error}, fault.headers()
        if parse_error is not None:
            return 200, {"ok": False, "error": parse_error}, {}
        try:
            result = handler(self._state, params)
        except ApiError as error:
            return 200, error.body(), {}
        if fault is not None:  # carried out, and the answer lost on its way back
            return fault.status, {"ok": False, "error": fault.error}, fault.headers()
        return 200, {"ok": True, **result}, {}

    # -- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` authenticated calls of `method` with a failure.

        The body is `{"ok": false, "error": error}` with HTTP `status`; HTTP 429 always carries
        `Retry-After` (1 s unless given). Use `status=200` for logic errors such as
        `channel_not_found`. Faults queue up in the order they were added.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._state.faults.setdefault(method, []).append(
                Fault(status, error, retry_after, times)
            )

    def lose_next_answer(
        self, method: str, *, status: int = 504, error: str = "gateway_timeout", times: int = 1
    ) -> None:
        """Carry out the next `times` authenticated calls of `method` (a post is stored),
        then answer each with HTTP `status` instead of its result, as when Slack's answer
        never reaches the caller."""
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._state.faults.setdefault(method, []).append(
                Fault(status, error, None, times, after=True)
            )

    def hold_answers(self, method: str) -> None:
        """From now on, keep back the answer of every successful call to `method` (it is
        carried out at once) until `release_answers()`, or for HOLD_SECONDS at most."""
        with self._lock:
            self._held_methods.add(method)
            self._release.clear()

    def release_answers(self) -> None:
        """Answer the held calls, and hold no more."""
        with self._lock:
            self._held_methods.clear()
            self._release.set()

    def wait_for_held_answer(self, timeout: float) -> bool:
        """Block until a call's answer is being held back (its effect is stored)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held_answers > 0, timeout=timeout)

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Block until `done()` holds, asked again after every call received, or until
        `timeout` seconds pass; whether it holds. `done` may use this fake's queries."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = len(self._state.calls)
            if done():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait_for(partial(self._calls_since, seen), timeout=remaining)

    def _calls_since(self, seen: int) -> bool:
        return len(self._state.calls) != seen

    # -- queries for tests and the sandbox -----------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call received so far, oldest first."""
        with self._lock:
            return list(self._state.calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self._state.calls if call.method == method]

    def channels(self) -> list[str]:
        """Channels holding messages, in the order they were first posted to (a channel
        posted to by `#name` is listed by its name, whichever way it was named since)."""
        with self._lock:
            return list(self._state.channels)

    def add_channels(self, *names: str) -> None:
        """Make channels (`#name`) exist before anything is posted to them, as the other
        channels of a workspace do: `conversations.list` lists them, in this order."""
        with self._lock:
            for name in names:
                self._state.named(name)

    def channel_id(self, name: str) -> str | None:
        """The id Slack answers with for the channel `#name`, once it has been posted to."""
        with self._lock:
            return self._state.channel_ids.get(name)

    def messages(self, channel: str) -> list[Json]:
        """Top-level messages of `channel` (its `#name` or its id; thread replies excluded
        unless broadcast), oldest first.

        Each is a dict with channel, ts, text, blocks, thread_ts, user, edited (bool), history
        (earlier versions as {text, blocks, edited_ts}) and reply_count.
        """
        with self._lock:
            kept = self._state.channels.get(self._state.key_of(channel), [])
            return [m.record() for m in kept if m.is_top_level]

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The thread rooted at `ts`: the parent first, then its replies, oldest first."""
        with self._lock:
            by_ts = self._state.by_ts
            channel = self._state.key_of(channel)
            parent = by_ts.get((channel, ts))
            if parent is None:
                return []
            return [parent.record()] + [by_ts[(channel, r)].record() for r in parent.replies]

    def ephemeral_messages(self, channel: str | None = None) -> list[Json]:
        """Ephemeral messages (channel, user, ts, text, blocks, thread_ts), oldest first."""
        with self._lock:
            found = [m for m in self._state.ephemeral if channel is None or m["channel"] == channel]
            return copy.deepcopy(found)

    def opened_views(self) -> list[Json]:
        """Views opened so far, as {"trigger_id": ..., "view": <the view Slack returned>}."""
        with self._lock:
            return copy.deepcopy(self._state.views)

    def home_view(self, user: str) -> Json | None:
        """The App Home view last published for `user` (as Slack returned it), or None."""
        with self._lock:
            view = self._state.home_views.get(user)
            return copy.deepcopy(view) if view is not None else None

    def responses(self, token: str | None = None) -> list[Json]:
        """Bodies posted to `/response/<token>` (every token when None), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(r["body"])
                for r in self._state.responses
                if token is None or r["token"] == token
            ]

    def reset(self) -> None:
        """Forget calls, messages, views and pending faults; keep the user directory.

        Timestamps keep increasing across resets, so a ts is never handed out twice.
        """
        with self._lock:
            self._state.reset()
            self._held_methods.clear()
            self._release.set()
