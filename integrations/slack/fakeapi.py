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
- `fail_next()` injects rate limits (HTTP 429 + Retry-After), 5xx answers or logic errors.
- `views.publish` keeps the latest App Home view of each user (`home_view(user)`).
- `POST /response/<token>` stands in for a slash command's or an interaction's
  `response_url`: put `<base url>/response/<any token>` in a payload and what the app sends
  back to it is recorded (`responses(token)`), as Slack would show it.

Every call is recorded, failed ones included, before it is answered. State is guarded by a
lock, because uvicorn serves the fake from one thread while tests read it from another.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "FakeSlackWebApi",
    "RecordedCall",
    "TEAM_ID",
]

Json = dict[str, Any]

TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Releasebot Sandbox"
TEAM_URL = "https://releasebot-sandbox.slack.com/"
BOT_USER_ID = "U0RELBOT"
BOT_USER_NAME = "releasebot"
BOT_ID = "B0RELBOT"
APP_ID = "A0RELBOT"

DEFAULT_EPOCH = 1_700_000_000.0
"""Where the default clock stands, so timestamps are the same on every run."""

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_CHARS = 40_000
MAX_MODAL_TITLE_CHARS = 24
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 999

CHANNEL_PREFIXES = ("#", "C", "G", "D", "U", "W")  # a user id posts a direct message, as Slack does
"""Channel names the fake accepts: `#name`, or public (C…) and private (G…) channel ids."""

JSON_ENCODED_FIELDS = ("blocks", "attachments", "view", "metadata")
"""Fields that clients send as JSON strings inside form-encoded bodies."""

_MICROS = 1_000_000
_TS_STEP = 100
"""Microseconds between two timestamps handed out in the same instant."""


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the fake received it. `params` never holds the token."""

    method: str
    params: Json
    token: str | None


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int | None
    remaining: int

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class _ApiError(Exception):
    """A Slack logic error: HTTP 200 with `{"ok": false, "error": code}`."""

    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


@dataclass
class _Message:
    channel: str
    ts: str
    text: str
    blocks: list[Json]
    thread_ts: str | None = None
    broadcast: bool = False
    user: str = BOT_USER_ID
    edited_ts: str | None = None
    history: list[Json] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def is_top_level(self) -> bool:
        return self.thread_ts is None or self.broadcast

    def record(self) -> Json:
        """The message as tests and the sandbox page see it."""
        return copy.deepcopy(
            {
                "channel": self.channel,
                "ts": self.ts,
                "text": self.text,
                "blocks": self.blocks,
                "thread_ts": self.thread_ts,
                "user": self.user,
                "edited": self.edited_ts is not None,
                "history": self.history,
                "reply_count": len(self.replies),
            }
        )

    def api(self) -> Json:
        """The message as Slack's Web API renders it."""
        message: Json = {
            "type": "message",
            "user": self.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks:
            message["blocks"] = copy.deepcopy(self.blocks)
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
            message["parent_user_id"] = BOT_USER_ID
            if self.broadcast:
                message["subtype"] = "thread_broadcast"
        elif self.replies:
            message["thread_ts"] = self.ts
            message["reply_count"] = len(self.replies)
            message["reply_users"] = [BOT_USER_ID]
            message["reply_users_count"] = 1
            message["latest_reply"] = self.replies[-1]
        if self.edited_ts is not None:
            message["edited"] = {"user": self.user, "ts": self.edited_ts}
        return message


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
        self._clock = clock
        self._last_micros = _to_micros(clock())
        self._users = copy.deepcopy(users or {})
        self._usergroups = copy.deepcopy(usergroups or {})
        self._calls: list[RecordedCall] = []
        self._channels: dict[str, list[_Message]] = {}
        self._by_ts: dict[tuple[str, str], _Message] = {}
        self._ephemeral: list[Json] = []
        self._views: list[Json] = []
        self._home_views: dict[str, Json] = {}
        self._responses: list[Json] = []
        self._used_triggers: set[str] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
        }

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
        params, parse_error = await _read_params(request)
        body_token = params.pop("token", None)
        token = _bearer_token(request.headers.get("authorization"))
        if token is None and isinstance(body_token, str) and body_token:
            token = body_token
        with self._lock:
            self._calls.append(RecordedCall(method, copy.deepcopy(params), token))
            status, body, headers = self._answer(method, params, token, parse_error)
        return JSONResponse(body, status_code=status, headers=headers)

    async def _response_url(self, request: Request) -> Response:
        """What an app posts to a `response_url`: JSON (or a form `payload=`), recorded."""
        token: str = request.path_params["token"]
        params, parse_error = await _read_params(request)
        if isinstance(params.get("payload"), str):
            try:
                params = json.loads(params["payload"])
            except ValueError:
                parse_error = "invalid_payload"
        if parse_error is not None or not isinstance(params, dict):
            return Response("invalid_payload", status_code=400, media_type="text/plain")
        with self._lock:
            self._responses.append({"token": token, "body": copy.deepcopy(params)})
        if params.get("blocks") is not None:
            try:
                _blocks(params.get("blocks"), limit=MAX_MESSAGE_BLOCKS, error="invalid_blocks")
            except _ApiError as error:
                return Response(error.error, status_code=400, media_type="text/plain")
        return Response("ok", media_type="text/plain")

    def _answer(
        self, method: str, params: Json, token: str | None, parse_error: str | None
    ) -> tuple[int, Json, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if token is None:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if not token.startswith("xoxb-"):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        fault = self._take_fault(method)
        if fault is not None:
            return fault.status, {"ok": False, "error": fault.error}, fault.headers()
        if parse_error is not None:
            return 200, {"ok": False, "error": parse_error}, {}
        try:
            result = handler(params)
        except _ApiError as error:
            return 200, error.body(), {}
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
            self._faults.setdefault(method, []).append(_Fault(status, error, retry_after, times))

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining == 0:
            queue.pop(0)
        return fault

    # -- queries for tests and the sandbox -----------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call received so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self._calls if call.method == method]

    def channels(self) -> list[str]:
        """Channels holding messages, in the order they were first posted to."""
        with self._lock:
            return list(self._channels)

    def messages(self, channel: str) -> list[Json]:
        """Top-level messages of `channel` (thread replies excluded unless broadcast), oldest first.

        Each is a dict with channel, ts, text, blocks, thread_ts, user, edited (bool), history
        (earlier versions as {text, blocks, edited_ts}) and reply_count.
        """
        with self._lock:
            return [m.record() for m in self._channels.get(channel, []) if m.is_top_level]

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The thread rooted at `ts`: the parent first, then its replies, oldest first."""
        with self._lock:
            parent = self._by_ts.get((channel, ts))
            if parent is None:
                return []
            return [parent.record()] + [self._by_ts[(channel, r)].record() for r in parent.replies]

    def ephemeral_messages(self, channel: str | None = None) -> list[Json]:
        """Ephemeral messages (channel, user, ts, text, blocks, thread_ts), oldest first."""
        with self._lock:
            found = [m for m in self._ephemeral if channel is None or m["channel"] == channel]
            return copy.deepcopy(found)

    def opened_views(self) -> list[Json]:
        """Views opened so far, as {"trigger_id": ..., "view": <the view Slack returned>}."""
        with self._lock:
            return copy.deepcopy(self._views)

    def home_view(self, user: str) -> Json | None:
        """The App Home view last published for `user` (as Slack returned it), or None."""
        with self._lock:
            view = self._home_views.get(user)
            return copy.deepcopy(view) if view is not None else None

    def responses(self, token: str | None = None) -> list[Json]:
        """Bodies posted to `/response/<token>` (every token when None), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(r["body"])
                for r in self._responses
                if token is None or r["token"] == token
            ]

    def reset(self) -> None:
        """Forget calls, messages, views and pending faults; keep the user directory.

        Timestamps keep increasing across resets, so a ts is never handed out twice.
        """
        with self._lock:
            self._calls.clear()
            self._channels.clear()
            self._by_ts.clear()
            self._ephemeral.clear()
            self._views.clear()
            self._home_views.clear()
            self._responses.clear()
            self._used_triggers.clear()
            self._faults.clear()

    # -- methods (called with the lock held) ---------------------------------------------------

    def _auth_test(self, params: Json) -> Json:
        return {
            "url": TEAM_URL,
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: Json) -> Json:
        channel = _channel(params)
        text, blocks = _content(params)
        thread_ts = _str(params, "thread_ts")
        if thread_ts is not None:
            parent = self._by_ts.get((channel, thread_ts))
            if parent is None:
                raise _ApiError("thread_not_found")
            thread_ts = parent.thread_ts or parent.ts
        message = _Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            broadcast=thread_ts is not None and _bool(params, "reply_broadcast"),
        )
        self._channels.setdefault(channel, []).append(message)
        self._by_ts[(channel, message.ts)] = message
        if thread_ts is not None:
            self._by_ts[(channel, thread_ts)].replies.append(message.ts)
        return {"channel": channel, "ts": message.ts, "message": message.api()}

    def _chat_update(self, params: Json) -> Json:
        channel = _channel(params)
        ts = _str(params, "ts")
        message = None if ts is None else self._by_ts.get((channel, ts))
        if message is None:
            raise _ApiError("message_not_found")
        text, blocks = _content(params)
        message.history.append(
            {"text": message.text, "blocks": message.blocks, "edited_ts": message.edited_ts}
        )
        if params.get("text") is not None:
            message.text = text
        if params.get("blocks") is not None:  # as in Slack, absent blocks are kept
            message.blocks = blocks
        message.edited_ts = self._next_ts()
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.api(),
        }

    def _chat_post_ephemeral(self, params: Json) -> Json:
        channel = _channel(params)
        user = _str(params, "user")
        if user is None:
            raise _ApiError("user_not_found")
        text, blocks = _content(params)
        ts = self._next_ts()
        self._ephemeral.append(
            {
                "channel": channel,
                "user": user,
                "ts": ts,
                "text": text,
                "blocks": blocks,
                "thread_ts": _str(params, "thread_ts"),
            }
        )
        return {"message_ts": ts}

    def _views_open(self, params: Json) -> Json:
        trigger_id = _str(params, "trigger_id")
        if trigger_id is None:
            raise _ApiError("invalid_arguments", "[ERROR] missing required field: trigger_id")
        view = params.get("view")
        if not isinstance(view, dict):
            raise _ApiError("invalid_arguments", "[ERROR] missing required field: view")
        if trigger_id in self._used_triggers:
            raise _ApiError("exchanged_trigger_id")
        blocks = _blocks(view.get("blocks"), limit=MAX_VIEW_BLOCKS, error="invalid_arguments")
        title = view.get("title")
        title_text = title.get("text") if isinstance(title, dict) else None
        if isinstance(title_text, str) and len(title_text) > MAX_MODAL_TITLE_CHARS:
            raise _ApiError(
                "invalid_arguments",
                f"[ERROR] must be less than {MAX_MODAL_TITLE_CHARS + 1} characters "
                "[json-pointer:/view/title/text]",
            )
        self._used_triggers.add(trigger_id)
        view_id = f"V{len(self._views) + 1:010d}"
        opened: Json = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
            "blocks": blocks,
            "state": {"values": {}},
            "hash": f"{self._next_ts()}.{hashlib.sha256(view_id.encode()).hexdigest()[:8]}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        self._views.append({"trigger_id": trigger_id, "view": opened})
        return {"view": copy.deepcopy(opened)}

    def _views_publish(self, params: Json) -> Json:
        user_id = _str(params, "user_id")
        if user_id is None:
            raise _ApiError("invalid_arguments", "[ERROR] missing required field: user_id")
        view = params.get("view")
        if not isinstance(view, dict):
            raise _ApiError("invalid_arguments", "[ERROR] missing required field: view")
        if view.get("type") != "home":
            raise _ApiError("invalid_arguments", "[ERROR] must be home [json-pointer:/view/type]")
        blocks = _blocks(view.get("blocks"), limit=MAX_VIEW_BLOCKS, error="invalid_arguments")
        previous = self._home_views.get(user_id)
        view_id = previous["id"] if previous else f"VH{len(self._home_views) + 1:09d}"
        published: Json = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "home",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            **copy.deepcopy(view),
            "blocks": blocks,
            "state": {"values": {}},
            "hash": f"{self._next_ts()}.{hashlib.sha256(view_id.encode()).hexdigest()[:8]}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        self._home_views[user_id] = published
        return {"view": copy.deepcopy(published)}

    def _users_info(self, params: Json) -> Json:
        user_id = _str(params, "user")
        known = None if user_id is None else self._users.get(user_id)
        if user_id is None or known is None:
            raise _ApiError("user_not_found")
        user: Json = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": user_id.lower(),
            "deleted": False,
            "is_bot": False,
            "is_admin": False,
            "tz": "UTC",
            "profile": {},
        }
        user.update(copy.deepcopy(known))
        return {"user": user}

    def _usergroups_users_list(self, params: Json) -> Json:
        group = _str(params, "usergroup")
        members = None if group is None else self._usergroups.get(group)
        if members is None:
            raise _ApiError("no_such_subteam")
        return {"users": list(members)}

    def _conversations_history(self, params: Json) -> Json:
        channel = _channel(params)
        limit = _limit(params)
        newest_first = [m for m in reversed(self._channels.get(channel, [])) if m.is_top_level]
        return {
            "messages": [m.api() for m in newest_first[:limit]],
            "has_more": len(newest_first) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, params: Json) -> Json:
        channel = _channel(params)
        ts = _str(params, "ts")
        message = None if ts is None else self._by_ts.get((channel, ts))
        if message is None:
            raise _ApiError("thread_not_found")
        parent = self._by_ts[(channel, message.thread_ts or message.ts)]
        thread = [parent] + [self._by_ts[(channel, r)] for r in parent.replies]
        limit = _limit(params)
        return {
            "messages": [m.api() for m in thread[:limit]],
            "has_more": len(thread) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _next_ts(self) -> str:
        micros = max(_to_micros(self._clock()), self._last_micros + _TS_STEP)
        self._last_micros = micros
        return f"{micros // _MICROS}.{micros % _MICROS:06d}"


# -- request parsing ---------------------------------------------------------------------------


async def _read_params(request: Request) -> tuple[Json, str | None]:
    """Query and body parameters merged, plus the Slack error code if the body is unreadable."""
    params: Json = dict(request.query_params)
    body = await request.body()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    error: str | None = None
    if body.strip():
        if media_type == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                params.update(payload)
            else:
                error = "invalid_json"
        elif media_type in ("application/x-www-form-urlencoded", ""):
            try:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                error = "invalid_form_data"
        else:
            error = "invalid_form_data"
    for name in JSON_ENCODED_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            try:
                params[name] = json.loads(value)
            except ValueError:
                pass  # left as a string; the method reports it as invalid
    return params, error


def _bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _str(params: Json, name: str) -> str | None:
    value = params.get(name)
    return value if isinstance(value, str) and value else None


def _bool(params: Json, name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return value is True or value == 1


def _limit(params: Json) -> int:
    value = params.get("limit")
    try:
        limit = int(value) if value is not None else DEFAULT_HISTORY_LIMIT
    except (TypeError, ValueError):
        raise _ApiError("invalid_limit") from None
    return max(1, min(limit, MAX_HISTORY_LIMIT))


def _channel(params: Json) -> str:
    channel = _str(params, "channel")
    if channel is None or not channel.startswith(CHANNEL_PREFIXES):
        raise _ApiError("channel_not_found")
    return channel


def _content(params: Json) -> tuple[str, list[Json]]:
    """The text and blocks of a message, checked against the limits Slack enforces."""
    text = params.get("text")
    if text is not None and not isinstance(text, str):
        raise _ApiError("invalid_arguments", "[ERROR] text must be a string [json-pointer:/text]")
    blocks = _blocks(params.get("blocks"), limit=MAX_MESSAGE_BLOCKS, error="invalid_blocks")
    if not text and not blocks:
        raise _ApiError("no_text")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise _ApiError("msg_too_long")
    return text or "", blocks


def _blocks(value: Any, *, limit: int, error: str) -> list[Json]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in value
    ):
        raise _ApiError(
            error, "[ERROR] must be an array of blocks with a type [json-pointer:/blocks]"
        )
    if len(value) > limit:
        raise _ApiError(error, f"[ERROR] no more than {limit} items allowed [json-pointer:/blocks]")
    return copy.deepcopy(value)


def _to_micros(seconds: float) -> int:
    return int(round(seconds * _MICROS))
