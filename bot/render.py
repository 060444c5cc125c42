"""Release messages and thread lines, as Slack sends them, with operators' overrides.

The release message's blocks are built by `bot.blocks.release`; an operator who puts a
`release_message.json.j2` in `RELEASEBOT_TEMPLATES_DIR` replaces them with their own
template. The fallback text and the thread lines are Jinja2 text templates (any of them
can be overridden from the same directory). Every value a template prints is escaped for
Slack mrkdwn (`&`, `<`, `>`) and, in JSON templates, for JSON as well, so text from
commits and CI payloads can neither ping `@channel` nor fake a link nor break the
message. Links and mentions go through the `link` and `mention` helpers, which escape
their parts and mark the result as already safe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

import jinja2

from bot.blocks.mrkdwn import (
    clock_time,
    escape_mrkdwn,
    link,
    mention,
    plain,
    risk_label,
    state_label,
    truncate,
    with_mentions,
)
from bot.blocks.release import COMMITS_SHOWN, commits_more, release_blocks
from bot.domain.ingest import revision_label
from bot.services.release_views import ReleaseView

TEMPLATES: Final = Path(__file__).parent / "templates"
RELEASE_BLOCKS_TEMPLATE: Final = "release_message.json.j2"
_VIEW_FIELDS = tuple(f.name for f in fields(ReleaseView))


def _finalize_json(value: object) -> str:
    return json.dumps(escape_mrkdwn(value), ensure_ascii=False)[1:-1]


def _finalize_text(value: object) -> str:
    return escape_mrkdwn(value)


def _environment(directory: Path | None, finalize: Callable[[object], str]) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if directory is not None:
        loaders.append(jinja2.FileSystemLoader(str(directory)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # escaping is done by `finalize`, for mrkdwn rather than HTML
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.globals.update(
        link=link,
        mention=mention,
        state_label=state_label,
        risk_label=risk_label,
        revision=revision_label,
    )
    env.filters.update(
        truncate_to=truncate, clock=clock_time, plain=plain, with_mentions=with_mentions
    )
    return env


class Renderer:
    """Renders release messages and thread lines (optionally overridden by the operator)."""

    def __init__(self, *, template_dir: Path | None = None, public_url: str = "") -> None:
        self._json = _environment(template_dir, _finalize_json)
        self._text = _environment(template_dir, _finalize_text)
        self._public_url = public_url.rstrip("/")
        self._custom_blocks = (
            template_dir is not None and (template_dir / RELEASE_BLOCKS_TEMPLATE).is_file()
        )

    def release_message(self, view: ReleaseView) -> tuple[str, list[dict[str, Any]]]:
        """(fallback text, blocks) for the release message of one deployment."""
        details_url = f"{self._public_url}/deployments/{view.deployment_id}"
        context = {
            "r": view,
            # The view's fields as a dict, shallow: templates only read them (asdict would
            # deep-copy every commit on every render).
            "release": {name: getattr(view, name) for name in _VIEW_FIELDS},
            "details_url": details_url,
            "commits_shown": (view.commits or [])[:COMMITS_SHOWN],
            "commits_more": commits_more(view),
        }
        if self._custom_blocks:
            blocks = self._blocks(RELEASE_BLOCKS_TEMPLATE, context)
        else:
            blocks = release_blocks(view, details_url=details_url)
        text = self._text.get_template("release_message.txt.j2").render(context).strip()
        return text, blocks

    def thread_reply(self, view: ReleaseView, change: dict[str, Any]) -> str:
        """One line in the release message's thread, from the template `change` names."""
        template = str(change.get("template") or "thread_reply.txt.j2")
        details_url = f"{self._public_url}/deployments/{view.deployment_id}"
        context = {"r": view, "change": change, "details_url": details_url}
        return self._text.get_template(template).render(context).strip()

    def _blocks(self, name: str, context: dict[str, Any]) -> list[dict[str, Any]]:
        rendered = self._json.get_template(name).render(context)
        try:
            blocks = json.loads(rendered)
        except json.JSONDecodeError as exc:
            raise ValueError(f"template {name} did not render valid JSON: {exc}") from exc
        if not isinstance(blocks, list):
            raise ValueError(f"template {name} must render a JSON list of blocks")
        return blocks
