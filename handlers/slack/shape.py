"""The shape of a Slack payload, checked before Bolt reads it.

Bolt and the listeners read a payload's well-known fields without asking what they hold
(`body["event"].get(...)`, `body["actions"][0]["action_id"]`, `view["state"]["values"]`).
Slack always sends these fields in one shape; a signed body that does not is refused here
with a reason (`BadInput`, answered 400) instead of failing somewhere inside Bolt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.inbound import BadInput

# A name or id as text, or an object carrying one (`"team": "T1"` or `"team": {"id": "T1"}`).
_TEXT_OR_OBJECT = ("enterprise", "team", "user", "channel")
_OBJECTS = ("event", "view", "message", "previous_message", "container")
# Read as `body.get(key, {}).get(...)`: present, they must be objects, null included.
_NEVER_NULL = ("event", "view")
_EVENT_OBJECTS = ("tokens", "function")
# What a person does in Slack's UI: `user` is always an object with its id.
_INTERACTIONS = ("block_actions", "view_submission", "view_closed", "shortcut", "message_action")
# Objects whose own fields Bolt reads the same way.
_NESTED = ("event", "message", "previous_message")
_MAX_NESTING = 3


def check_payload(data: Any) -> object:
    """The payload's `type`; BadInput naming the first well-known field in the wrong shape."""
    if not isinstance(data, Mapping):
        raise BadInput("the JSON must be an object")
    _fields(data, "payload", 0)
    for key in _NEVER_NULL:
        if key in data and not isinstance(data[key], Mapping):
            raise BadInput(f"payload.{key} must be an object")
    event = data.get("event")
    for key in _EVENT_OBJECTS:
        if isinstance(event, Mapping) and key in event and not isinstance(event[key], Mapping):
            raise BadInput(f"payload.event.{key} must be an object")
    if data.get("type") in _INTERACTIONS:
        user = data.get("user")
        if not isinstance(user, Mapping) or not isinstance(user.get("id"), str):
            raise BadInput("payload.user must be an object with an id")
    authorizations = data.get("authorizations")
    if authorizations is not None:
        for n, item in enumerate(_list_of_objects(authorizations, "authorizations")):
            _fields(item, f"authorizations[{n}]", 1)
    actions = data.get("actions")
    if actions is not None or data.get("type") == "block_actions":
        listed = _list_of_objects(actions, "actions")
        if not listed:
            raise BadInput("actions must hold at least one action")
        for n, action in enumerate(listed):
            if not isinstance(action.get("action_id"), str):
                raise BadInput(f"actions[{n}].action_id must be a string")
    view = data.get("view")
    if isinstance(view, Mapping):
        _view(view)
    return data.get("type")


def _fields(data: Mapping[str, Any], where: str, depth: int) -> None:
    for key in _TEXT_OR_OBJECT:
        value = data.get(key)
        if value is not None and not isinstance(value, str | Mapping):
            raise BadInput(f"{where}.{key} must be a string or an object")
    for key in _OBJECTS:
        value = data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise BadInput(f"{where}.{key} must be an object")
    if depth < _MAX_NESTING:
        for key in _NESTED:
            value = data.get(key)
            if isinstance(value, Mapping):
                _fields(value, f"{where}.{key}", depth + 1)


def _list_of_objects(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise BadInput(f"{where} must be a list of objects")
    return value


def _view(view: Mapping[str, Any]) -> None:
    for key in ("callback_id", "private_metadata", "id"):
        value = view.get(key)
        if value is not None and not isinstance(value, str):
            raise BadInput(f"view.{key} must be a string")
    if "state" not in view:
        return
    state = view["state"]
    if not isinstance(state, Mapping) or not isinstance(state.get("values", {}), Mapping):
        raise BadInput("view.state.values must be an object")
    for block, inputs in state.get("values", {}).items():
        if not isinstance(inputs, Mapping) or not all(
            isinstance(element, Mapping) for element in inputs.values()
        ):
            raise BadInput(f"view.state.values.{block[:40]} must map action ids to objects")
