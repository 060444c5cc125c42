"""The Slack Web API methods releasebot uses, as functions of the sandbox's state.

Each takes the `SlackState` and the call's parameters, changes the state as Slack would and
returns the answer's fields (without `ok`), or raises `ApiError` for Slack's logic errors.
`METHODS` maps each method name to its function. The caller holds the state's lock.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable

from integrations.sandbox.params import (
    MAX_MODAL_TITLE_CHARS,
    MAX_VIEW_BLOCKS,
    blocks_of,
    channel_of,
    content_of,
    flag,
    limit_of,
    metadata_of,
    text_param,
    ts_param,
)
from integrations.sandbox.store import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    BOT_USER_NAME,
    TEAM_ID,
    TEAM_NAME,
    TEAM_URL,
    ApiError,
    Json,
    Message,
    SlackState,
)

__all__ = ["METHODS", "Method", "name_channel"]

Method = Callable[[SlackState, Json], Json]

POSTING_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
CONVERSATION_TYPES = frozenset({"public_channel", "private_channel", "mpim", "im"})
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


def auth_test(state: SlackState, params: Json) -> Json:
    return {
        "url": TEAM_URL,
        "team": TEAM_NAME,
        "user": BOT_USER_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def name_channel(state: SlackState, method: str, params: Json) -> None:
    """A post or an edit naming a `#name` makes that channel exist (with its id) before
    anything else happens to the call, as if the workspace had every channel the bot is
    asked to post to: even a post that then fails leaves it to be listed."""
    channel = params.get("channel")
    if method in POSTING_METHODS and isinstance(channel, str) and channel.startswith("#"):
        state.named(channel)


def _posting_to(state: SlackState, params: Json) -> str:
    """Where a post or an edit goes: a `#name` or an id, as Slack takes either there."""
    channel = channel_of(params)
    if channel.startswith("#"):
        return state.named(channel)
    return state.key_of(channel)


def _reading(state: SlackState, params: Json) -> str:
    """The channel a read names: history and replies take ids only (`channel_not_found`
    for a `#name`, as in Slack)."""
    channel = channel_of(params)
    if channel.startswith("#"):
        raise ApiError("channel_not_found")
    return state.key_of(channel)


def chat_post_message(state: SlackState, params: Json) -> Json:
    """Post; the answer names the channel by its id, even when the post named it `#name`."""
    channel = _posting_to(state, params)
    text, blocks = content_of(params)
    metadata = metadata_of(params)
    thread_ts = text_param(params, "thread_ts")
    if thread_ts is not None:
        parent = state.by_ts.get((channel, thread_ts))
        if parent is None:
            raise ApiError("thread_not_found")
        thread_ts = parent.thread_ts or parent.ts
    message = Message(
        channel=channel,
        ts=state.next_ts(),
        text=text,
        blocks=blocks,
        thread_ts=thread_ts,
        broadcast=thread_ts is not None and flag(params, "reply_broadcast"),
        metadata=metadata,
        channel_id=state.id_of(channel),
    )
    state.channels.setdefault(channel, []).append(message)
    state.by_ts[(channel, message.ts)] = message
    if thread_ts is not None:
        state.by_ts[(channel, thread_ts)].replies.append(message.ts)
    return {"channel": state.id_of(channel), "ts": message.ts, "message": message.api()}


def chat_update(state: SlackState, params: Json) -> Json:
    channel = _posting_to(state, params)
    ts = text_param(params, "ts")
    message = None if ts is None else state.by_ts.get((channel, ts))
    if message is None:
        raise ApiError("message_not_found")
    text, blocks = content_of(params)
    message.history.append(
        {"text": message.text, "blocks": message.blocks, "edited_ts": message.edited_ts}
    )
    if params.get("text") is not None:
        message.text = text
    if params.get("blocks") is not None:  # as in Slack, absent blocks are kept
        message.blocks = blocks
    message.edited_ts = state.next_ts()
    return {
        "channel": state.id_of(channel),
        "ts": message.ts,
        "text": message.text,
        "message": message.api(),
    }


def chat_post_ephemeral(state: SlackState, params: Json) -> Json:
    channel = channel_of(params)
    user = text_param(params, "user")
    if user is None:
        raise ApiError("user_not_found")
    text, blocks = content_of(params)
    ts = state.next_ts()
    state.ephemeral.append(
        {
            "channel": channel,
            "user": user,
            "ts": ts,
            "text": text,
            "blocks": blocks,
            "thread_ts": text_param(params, "thread_ts"),
        }
    )
    return {"message_ts": ts}


def views_open(state: SlackState, params: Json) -> Json:
    trigger_id = text_param(params, "trigger_id")
    if trigger_id is None:
        raise ApiError("invalid_arguments", "[ERROR] missing required field: trigger_id")
    view = params.get("view")
    if not isinstance(view, dict):
        raise ApiError("invalid_arguments", "[ERROR] missing required field: view")
    if trigger_id in state.used_triggers:
        raise ApiError("exchanged_trigger_id")
    blocks = blocks_of(view.get("blocks"), limit=MAX_VIEW_BLOCKS, error="invalid_arguments")
    title = view.get("title")
    title_text = title.get("text") if isinstance(title, dict) else None
    if isinstance(title_text, str) and len(title_text) > MAX_MODAL_TITLE_CHARS:
        raise ApiError(
            "invalid_arguments",
            f"[ERROR] must be less than {MAX_MODAL_TITLE_CHARS + 1} characters "
            "[json-pointer:/view/title/text]",
        )
    state.used_triggers.add(trigger_id)
    view_id = f"V{len(state.views) + 1:010d}"
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
        **_view_tail(state, view_id, blocks),
    }
    state.views.append({"trigger_id": trigger_id, "view": opened})
    return {"view": copy.deepcopy(opened)}


def views_publish(state: SlackState, params: Json) -> Json:
    user_id = text_param(params, "user_id")
    if user_id is None:
        raise ApiError("invalid_arguments", "[ERROR] missing required field: user_id")
    view = params.get("view")
    if not isinstance(view, dict):
        raise ApiError("invalid_arguments", "[ERROR] missing required field: view")
    if view.get("type") != "home":
        raise ApiError("invalid_arguments", "[ERROR] must be home [json-pointer:/view/type]")
    blocks = blocks_of(view.get("blocks"), limit=MAX_VIEW_BLOCKS, error="invalid_arguments")
    previous = state.home_views.get(user_id)
    view_id = previous["id"] if previous else f"VH{len(state.home_views) + 1:09d}"
    published: Json = {
        "id": view_id,
        "team_id": TEAM_ID,
        "type": "home",
        "private_metadata": "",
        "callback_id": "",
        "external_id": "",
        **copy.deepcopy(view),
        **_view_tail(state, view_id, blocks),
    }
    state.home_views[user_id] = published
    return {"view": copy.deepcopy(published)}


def _view_tail(state: SlackState, view_id: str, blocks: list[Json]) -> Json:
    """The fields Slack sets on every view it returns, after the caller's own."""
    return {
        "blocks": blocks,
        "state": {"values": {}},
        "hash": f"{state.next_ts()}.{hashlib.sha256(view_id.encode()).hexdigest()[:8]}",
        "root_view_id": view_id,
        "previous_view_id": None,
        "app_id": APP_ID,
        "bot_id": BOT_ID,
    }


def users_info(state: SlackState, params: Json) -> Json:
    user_id = text_param(params, "user")
    known = None if user_id is None else state.users.get(user_id)
    if user_id is None or known is None:
        raise ApiError("user_not_found")
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


def users_lookup_by_email(state: SlackState, params: Json) -> Json:
    """The user whose profile carries this e-mail address (case-insensitive), as Slack's
    users.lookupByEmail answers; `users_not_found` when nobody does."""
    email = (text_param(params, "email") or "").strip().lower()
    for user_id, known in state.users.items():
        profile = known.get("profile") or {}
        if email and str(profile.get("email") or "").lower() == email:
            return users_info(state, {"user": user_id})
    raise ApiError("users_not_found")


def usergroups_users_list(state: SlackState, params: Json) -> Json:
    group = text_param(params, "usergroup")
    members = None if group is None else state.usergroups.get(group)
    if members is None:
        raise ApiError("no_such_subteam")
    return {"users": list(members)}


def conversations_history(state: SlackState, params: Json) -> Json:
    """Top-level messages, newest first, within `oldest`/`latest` (exclusive unless
    `inclusive`), a page of `limit` at a time (`cursor`); metadata with `include_all_metadata`."""
    channel = _reading(state, params)
    newest_first = [m for m in reversed(state.channels.get(channel, [])) if m.is_top_level]
    return {**_page(newest_first, params), "pin_count": 0}


def conversations_replies(state: SlackState, params: Json) -> Json:
    """A thread, its parent first, then its replies oldest first; the same bounds, pages
    and metadata as `conversations_history` (the parent always comes first when in range)."""
    channel = _reading(state, params)
    ts = text_param(params, "ts")
    message = None if ts is None else state.by_ts.get((channel, ts))
    if message is None:
        raise ApiError("thread_not_found")
    parent = state.by_ts[(channel, message.thread_ts or message.ts)]
    thread = [parent] + [state.by_ts[(channel, r)] for r in parent.replies]
    return _page(thread, params)


def conversations_list(state: SlackState, params: Json) -> Json:
    """The workspace's channels (every `#name` posted to, all public and none archived), a
    page of `limit` (at most 1000) at a time (`cursor`), of the `types` asked for
    (`public_channel` unless given)."""
    types = {t.strip() for t in (text_param(params, "types") or "public_channel").split(",")}
    if not types <= CONVERSATION_TYPES:
        raise ApiError("invalid_types")
    listed = [
        _channel(name, channel_id)
        for name, channel_id in state.channel_ids.items()
        if "public_channel" in types
    ]
    start, end = _window(params, len(listed), limit=_list_limit(params))
    return {
        "channels": listed[start:end],
        "response_metadata": {"next_cursor": f"next:{end}" if end < len(listed) else ""},
    }


def _channel(name: str, channel_id: str) -> Json:
    """A public channel the bot is in, as conversations.list describes it."""
    bare = name.lstrip("#")
    return {
        "id": channel_id,
        "name": bare,
        "name_normalized": bare,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": False,
        "is_archived": False,
        "is_general": False,
        "is_member": True,
        "created": 0,
        "context_team_id": TEAM_ID,
    }


def _window(params: Json, total: int, *, limit: int) -> tuple[int, int]:
    """The page a call's `cursor` asks for, `limit` items long, as (start, end) in `total`."""
    cursor = text_param(params, "cursor")
    start = 0
    if cursor is not None:
        if not cursor.startswith("next:") or not cursor[5:].isdigit():
            raise ApiError("invalid_cursor")
        start = int(cursor[5:])
    return start, min(start + limit, total)


def _list_limit(params: Json) -> int:
    """The `limit` of conversations.list: 100 unless given, at most 1000."""
    value = params.get("limit")
    try:
        limit = int(value) if value is not None else DEFAULT_LIST_LIMIT
    except (TypeError, ValueError):
        raise ApiError("invalid_limit") from None
    return max(1, min(limit, MAX_LIST_LIMIT))


def _page(messages: list[Message], params: Json) -> Json:
    """One page of `messages` within the call's time bounds, and the cursor of the next."""
    oldest, latest = ts_param(params, "oldest"), ts_param(params, "latest")
    inclusive = flag(params, "inclusive")
    within = [m for m in messages if _within(float(m.ts), oldest, latest, inclusive)]
    start, end = _window(params, len(within), limit=limit_of(params))
    with_metadata = flag(params, "include_all_metadata")
    return {
        "messages": [m.api(with_metadata=with_metadata) for m in within[start:end]],
        "has_more": end < len(within),
        "response_metadata": {"next_cursor": f"next:{end}" if end < len(within) else ""},
    }


def _within(ts: float, oldest: float | None, latest: float | None, inclusive: bool) -> bool:
    if oldest is not None and (ts < oldest or (ts == oldest and not inclusive)):
        return False
    return latest is None or ts < latest or (ts == latest and inclusive)


METHODS: dict[str, Method] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "views.open": views_open,
    "views.publish": views_publish,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.users.list": usergroups_users_list,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "conversations.list": conversations_list,
}
"""Every Web API method the sandbox answers; any other is `unknown_method`."""
