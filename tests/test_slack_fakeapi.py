"""The fake Slack Web API, driven over real HTTP the way slack_sdk and the sandbox use it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integrations.sandbox.webapi import BOT_ID, BOT_USER_ID, TEAM_ID, FakeSlackWebApi
from tests.servers import serve_in_thread

TOKEN = "xoxb-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TS = re.compile(r"^\d{10}\.\d{6}$")


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeSlackWebApi, str]]:
    fake = FakeSlackWebApi(
        users={"U1ALICE": {"name": "alice", "profile": {"email": "alice@example.com"}}},
        usergroups={"S0RELEASE": ["U1ALICE", "U2BOB"]},
    )
    with serve_in_thread(fake.app()) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(served: tuple[FakeSlackWebApi, str]) -> FakeSlackWebApi:
    served[0].reset()
    return served[0]


@pytest.fixture
def base_url(served: tuple[FakeSlackWebApi, str]) -> str:
    return served[1]


@pytest.fixture
def api(base_url: str, fake: FakeSlackWebApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{base_url}/api/", headers=AUTH) as client:
        yield client


def post(api: httpx.Client, method: str, **params: Any) -> dict[str, Any]:
    response = api.post(method, json=params)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


# -- auth and routing ----------------------------------------------------------------------------


def test_auth_test_names_the_sandbox_bot_on_both_url_layouts(base_url: str, fake: object) -> None:
    for url in (f"{base_url}/api/auth.test", f"{base_url}/auth.test"):
        body = httpx.post(url, headers=AUTH).json()
        assert body["ok"] is True
        assert (body["team_id"], body["user_id"], body["bot_id"]) == (TEAM_ID, BOT_USER_ID, BOT_ID)
        assert body["url"].startswith("https://")


def test_a_call_without_a_token_is_not_authed_and_still_recorded(
    base_url: str, fake: FakeSlackWebApi
) -> None:
    response = httpx.post(f"{base_url}/api/chat.postMessage", json={"channel": "#r", "text": "x"})

    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": "not_authed"}
    assert fake.messages("#r") == []
    [call] = fake.calls_to("chat.postMessage")
    assert call.token is None
    assert call.params == {"channel": "#r", "text": "x"}


def test_a_token_that_is_not_a_bot_token_is_invalid_auth(base_url: str, fake: object) -> None:
    response = httpx.post(f"{base_url}/api/auth.test", headers={"Authorization": "Bearer xoxp-1"})

    assert response.json() == {"ok": False, "error": "invalid_auth"}


def test_a_token_form_field_authenticates_and_is_kept_out_of_the_params(
    base_url: str, fake: FakeSlackWebApi
) -> None:
    response = httpx.post(
        f"{base_url}/api/chat.postMessage",
        data={"token": TOKEN, "channel": "C0RELEASES", "text": "hello"},
    )

    assert response.json()["ok"] is True
    [call] = fake.calls
    assert call.token == TOKEN
    assert "token" not in call.params


def test_an_unknown_method_is_refused(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    body = post(api, "chat.teleport", channel="#r")

    assert body["ok"] is False
    assert body["error"] == "unknown_method"
    assert [call.method for call in fake.calls] == ["chat.teleport"]


def test_an_unparseable_json_body_is_invalid_json(api: httpx.Client, fake: object) -> None:
    response = api.post(
        "chat.postMessage", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.json() == {"ok": False, "error": "invalid_json"}


# -- chat.postMessage ----------------------------------------------------------------------------


def test_post_message_stores_the_message_and_answers_like_slack(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    blocks = [section("*v42* is rolling out")]

    body = post(api, "chat.postMessage", channel="#releases", text="v42", blocks=blocks)

    assert body["ok"] is True
    assert body["channel"] == fake.channel_id("#releases")  # Slack answers with the id
    assert re.fullmatch(r"C[0-9A-F]{10}", body["channel"])
    assert TS.match(body["ts"])
    message = body["message"]
    assert message["type"] == "message"
    assert message["user"] == BOT_USER_ID
    assert (message["text"], message["blocks"], message["ts"]) == ("v42", blocks, body["ts"])
    assert "thread_ts" not in message
    [stored] = fake.messages("#releases")
    assert stored["ts"] == body["ts"]
    assert stored["text"] == "v42"
    assert stored["blocks"] == blocks
    assert stored["thread_ts"] is None
    assert stored["user"] == BOT_USER_ID
    assert stored["edited"] is False
    assert fake.channels() == ["#releases"]


def test_form_bodies_carry_blocks_as_a_json_string(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    blocks = [section("from a form")]

    response = api.post(
        "chat.postMessage",
        data={"channel": "C0RELEASES", "text": "fallback", "blocks": json.dumps(blocks)},
    )

    assert response.json()["ok"] is True
    assert fake.messages("C0RELEASES")[0]["blocks"] == blocks
    assert fake.calls_to("chat.postMessage")[0].params["blocks"] == blocks


def test_timestamps_are_unique_and_increasing(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    stamps = [post(api, "chat.postMessage", channel="#r", text=str(i))["ts"] for i in range(5)]

    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)
    assert [m["ts"] for m in fake.messages("#r")] == stamps


def test_timestamps_follow_an_injected_clock() -> None:
    now = [1_800_000_000.5]
    fake = FakeSlackWebApi(clock=lambda: now[0])
    with serve_in_thread(fake.app()) as base_url, httpx.Client(headers=AUTH) as client:
        url = f"{base_url}/api/chat.postMessage"
        first = client.post(url, json={"channel": "#r", "text": "a"}).json()["ts"]
        second = client.post(url, json={"channel": "#r", "text": "b"}).json()["ts"]
        now[0] = 1_800_000_100.0
        third = client.post(url, json={"channel": "#r", "text": "c"}).json()["ts"]

    assert (first, second, third) == ("1800000000.500100", "1800000000.500200", "1800000100.000000")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"channel": "#r"}, "no_text"),
        ({"channel": "#r", "text": "", "blocks": []}, "no_text"),
        ({"text": "hi"}, "channel_not_found"),
        ({"channel": "releases", "text": "hi"}, "channel_not_found"),
        ({"channel": "#r", "text": "x" * 40_001}, "msg_too_long"),
        (
            {"channel": "#r", "text": "hi", "blocks": [section(str(i)) for i in range(51)]},
            "invalid_blocks",
        ),
        ({"channel": "#r", "text": "hi", "blocks": [{"text": "no type"}]}, "invalid_blocks"),
        ({"channel": "#r", "text": "hi", "thread_ts": "1.000001"}, "thread_not_found"),
    ],
)
def test_post_message_refuses_what_slack_refuses(
    api: httpx.Client, fake: FakeSlackWebApi, params: dict[str, Any], error: str
) -> None:
    body = post(api, "chat.postMessage", **params)

    assert body["ok"] is False
    assert body["error"] == error
    assert fake.messages("#r") == []
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_fifty_blocks_are_allowed(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    body = post(
        api,
        "chat.postMessage",
        channel="#r",
        text="hi",
        blocks=[section(str(i)) for i in range(50)],
    )

    assert body["ok"] is True
    assert len(fake.messages("#r")[0]["blocks"]) == 50


def test_too_many_blocks_explain_the_limit(api: httpx.Client, fake: object) -> None:
    body = post(
        api,
        "chat.postMessage",
        channel="#r",
        text="hi",
        blocks=[section(str(i)) for i in range(51)],
    )

    assert body["error"] == "invalid_blocks"
    assert "50" in body["response_metadata"]["messages"][0]


# -- chat.update ---------------------------------------------------------------------------------


def test_update_edits_the_message_in_place(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    ts = post(api, "chat.postMessage", channel="#r", text="deploying", blocks=[section("old")])[
        "ts"
    ]

    body = post(api, "chat.update", channel="#r", ts=ts, text="deployed", blocks=[section("new")])

    assert body["ok"] is True
    assert (body["channel"], body["ts"], body["text"]) == (fake.channel_id("#r"), ts, "deployed")
    assert body["message"]["blocks"] == [section("new")]
    assert body["message"]["edited"]["user"] == BOT_USER_ID
    [stored] = fake.messages("#r")
    assert (stored["ts"], stored["text"], stored["blocks"]) == (ts, "deployed", [section("new")])
    assert stored["edited"] is True
    assert stored["history"] == [
        {"text": "deploying", "blocks": [section("old")], "edited_ts": None}
    ]


def test_update_without_blocks_keeps_the_blocks(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    ts = post(api, "chat.postMessage", channel="#r", text="a", blocks=[section("kept")])["ts"]

    post(api, "chat.update", channel="#r", ts=ts, text="b")

    assert fake.messages("#r")[0]["blocks"] == [section("kept")]
    assert fake.messages("#r")[0]["text"] == "b"


def test_update_of_an_unknown_message_is_message_not_found(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    ts = post(api, "chat.postMessage", channel="#r", text="a")["ts"]

    assert post(api, "chat.update", channel="#r", ts="1.000001", text="b")["error"] == (
        "message_not_found"
    )
    assert post(api, "chat.update", channel="#other", ts=ts, text="b")["error"] == (
        "message_not_found"
    )
    assert fake.messages("#r")[0]["text"] == "a"


# -- threads and reading back --------------------------------------------------------------------


def test_a_reply_lands_in_the_thread_and_not_in_the_channel(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    parent = post(api, "chat.postMessage", channel="#r", text="v42")["ts"]

    reply = post(api, "chat.postMessage", channel="#r", text="canary ok", thread_ts=parent)

    assert reply["message"]["thread_ts"] == parent
    assert [m["ts"] for m in fake.messages("#r")] == [parent]
    assert fake.messages("#r")[0]["reply_count"] == 1
    thread = fake.thread("#r", parent)
    assert [m["text"] for m in thread] == ["v42", "canary ok"]
    assert thread[1]["thread_ts"] == parent


def test_a_reply_to_a_reply_joins_the_parent_thread(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    parent = post(api, "chat.postMessage", channel="#r", text="v42")["ts"]
    first = post(api, "chat.postMessage", channel="#r", text="1", thread_ts=parent)["ts"]

    post(api, "chat.postMessage", channel="#r", text="2", thread_ts=first)

    assert [m["text"] for m in fake.thread("#r", parent)] == ["v42", "1", "2"]


def test_conversations_replies_and_history_read_back(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    parent = post(api, "chat.postMessage", channel="#r", text="v42")["ts"]
    post(api, "chat.postMessage", channel="#r", text="reply", thread_ts=parent)
    later = post(api, "chat.postMessage", channel="#r", text="v43")["ts"]

    channel = fake.channel_id("#r")
    replies = post(api, "conversations.replies", channel=channel, ts=parent)
    history = post(api, "conversations.history", channel=channel, limit=1)

    assert [m["text"] for m in replies["messages"]] == ["v42", "reply"]
    assert replies["messages"][0]["reply_count"] == 1
    assert [m["ts"] for m in history["messages"]] == [later]
    assert history["has_more"] is True
    assert post(api, "conversations.replies", channel=channel, ts="1.000001")["error"] == (
        "thread_not_found"
    )
    # Slack reads history by channel id only: a #name is a channel it does not know.
    assert post(api, "conversations.history", channel="#r")["error"] == "channel_not_found"
    assert post(api, "conversations.replies", channel="#r", ts=parent)["error"] == (
        "channel_not_found"
    )


def test_conversations_list_pages_through_the_named_channels(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    fake.add_channels("#alpha", "#beta")
    post(api, "chat.postMessage", channel="#gamma", text="v42")

    first = api.get("conversations.list", params={"types": "public_channel", "limit": "2"})
    page = first.json()
    cursor = page["response_metadata"]["next_cursor"]
    rest = post(api, "conversations.list", limit=2, cursor=cursor)

    listed = [*page["channels"], *rest["channels"]]
    assert [(c["name"], c["id"]) for c in listed] == [
        (name, fake.channel_id(f"#{name}")) for name in ("alpha", "beta", "gamma")
    ]
    assert all(c["is_channel"] and not c["is_archived"] for c in listed)
    assert cursor and rest["response_metadata"]["next_cursor"] == ""
    assert post(api, "conversations.list", types="private_channel")["channels"] == []
    assert post(api, "conversations.list", types="rooms")["error"] == "invalid_types"
    assert post(api, "conversations.list", cursor="nonsense")["error"] == "invalid_cursor"
    gamma = fake.channel_id("#gamma")
    assert [m["text"] for m in post(api, "conversations.history", channel=gamma)["messages"]] == [
        "v42"
    ]


# -- fault injection -----------------------------------------------------------------------------


def test_a_rate_limit_answers_429_with_retry_after(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    fake.fail_next("chat.postMessage", retry_after=7)

    limited = api.post("chat.postMessage", json={"channel": "#r", "text": "a"})
    after = api.post("chat.postMessage", json={"channel": "#r", "text": "a"})

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert after.json()["ok"] is True
    assert len(fake.calls_to("chat.postMessage")) == 2
    assert len(fake.messages("#r")) == 1


def test_a_rate_limit_always_carries_retry_after(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    fake.fail_next("chat.update", times=2)

    answers = [
        api.post("chat.update", json={"channel": "#r", "ts": "1.1", "text": "a"}) for _ in "ab"
    ]

    assert [(a.status_code, a.headers["Retry-After"]) for a in answers] == [(429, "1"), (429, "1")]


def test_a_server_error_answers_500(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    fake.fail_next("chat.postMessage", status=500, error="internal_error")

    response = api.post("chat.postMessage", json={"channel": "#r", "text": "a"})

    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.json() == {"ok": False, "error": "internal_error"}


def test_a_logic_error_can_be_injected(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    fake.fail_next("chat.postMessage", status=200, error="channel_not_found")

    assert post(api, "chat.postMessage", channel="#r", text="a")["error"] == "channel_not_found"
    assert post(api, "chat.postMessage", channel="#r", text="a")["ok"] is True


def test_faults_only_hit_their_method(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    fake.fail_next("chat.update")

    assert post(api, "chat.postMessage", channel="#r", text="a")["ok"] is True


def test_fail_next_refuses_a_count_below_one(fake: FakeSlackWebApi) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fake.fail_next("chat.postMessage", times=0)


# -- the other methods ---------------------------------------------------------------------------


def test_ephemeral_messages_are_kept_apart(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    body = post(api, "chat.postEphemeral", channel="#r", user="U1ALICE", text="only you")

    assert body["ok"] is True
    assert TS.match(body["message_ts"])
    assert fake.messages("#r") == []
    [ephemeral] = fake.ephemeral_messages("#r")
    assert (ephemeral["user"], ephemeral["text"]) == ("U1ALICE", "only you")


def test_views_open_returns_the_view_and_uses_the_trigger_once(
    api: httpx.Client, fake: FakeSlackWebApi
) -> None:
    view = {
        "type": "modal",
        "callback_id": "reject_reason",
        "private_metadata": "deploy-7",
        "title": {"type": "plain_text", "text": "Reject v42"},
        "blocks": [{"type": "input", "block_id": "reason"}],
    }

    opened = post(api, "views.open", trigger_id="1.2.abc", view=view)
    again = post(api, "views.open", trigger_id="1.2.abc", view=view)

    assert opened["ok"] is True
    assert opened["view"]["id"].startswith("V")
    assert opened["view"]["hash"]
    assert opened["view"]["callback_id"] == "reject_reason"
    assert opened["view"]["private_metadata"] == "deploy-7"
    assert opened["view"]["state"] == {"values": {}}
    assert again["error"] == "exchanged_trigger_id"
    assert fake.opened_views() == [{"trigger_id": "1.2.abc", "view": opened["view"]}]


def test_views_open_refuses_a_long_title(api: httpx.Client, fake: object) -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "x" * 25}, "blocks": []}

    assert post(api, "views.open", trigger_id="t", view=view)["error"] == "invalid_arguments"


def test_users_info_reads_the_directory_over_get(api: httpx.Client, fake: object) -> None:
    known = api.get("users.info", params={"user": "U1ALICE"}).json()
    unknown = api.get("users.info", params={"user": "U9NOBODY"}).json()

    assert known["ok"] is True
    assert known["user"]["id"] == "U1ALICE"
    assert known["user"]["name"] == "alice"
    assert known["user"]["profile"]["email"] == "alice@example.com"
    assert known["user"]["deleted"] is False
    assert unknown == {"ok": False, "error": "user_not_found"}


def test_usergroups_users_list_reads_the_directory(api: httpx.Client, fake: object) -> None:
    assert post(api, "usergroups.users.list", usergroup="S0RELEASE")["users"] == [
        "U1ALICE",
        "U2BOB",
    ]
    assert post(api, "usergroups.users.list", usergroup="S9NONE")["error"] == "no_such_subteam"


def test_reset_forgets_everything_recorded(api: httpx.Client, fake: FakeSlackWebApi) -> None:
    post(api, "chat.postMessage", channel="#r", text="a")
    fake.fail_next("chat.postMessage")

    fake.reset()

    assert fake.calls == []
    assert fake.messages("#r") == []
    assert fake.channels() == []
    assert post(api, "chat.postMessage", channel="#r", text="a")["ok"] is True
