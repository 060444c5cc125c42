"""The slash command (`slack.slash_command`, default `/release`): parse, one call, answer.

    /release help
    /release status [service]
    /release history <service> [env] [n]
    /release pending
    /release promote <service> <version|latest> to <env>
    /release rollback <service> <env> [to <version>] [-- reason...]
    /release freeze <env|all> <duration> <reason...>
    /release unfreeze <env|all>
    /release metrics [service] [days]

`parse(text)` is pure: it turns the typed text into one dataclass per subcommand, or a
`Usage` saying what is wrong and, through difflib, the closest valid word ("did you mean
`rollback`?") for subcommands, services and environments.

The listener acks at once with nothing and answers through the command's `response_url`
(ephemerally: only the person who typed sees it). Read-only answers stay there; actions
that change something (promote, rollback, freeze, unfreeze) are also announced in the
service's channel. Promote and roll back go through `Runtime.operate`, the path the buttons
take, with the same permission check and the same gates; freezing is for release managers.

A rollback typed as a command has no modal to ask for a reason: text after ` -- ` is the
reason, else it is "rolled back with /release by <user>".

Long lists (status, history, pending) are paged: each page stays well inside Block Kit's
limits (50 blocks, 3,000 characters per section) and carries a "Next" button that replaces
the answer with the following page.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from pydantic_core import PydanticCustomError
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Config, format_duration, parse_duration
from bot.render import clock_time, escape_mrkdwn, link, mention, risk_label, state_label
from bot.usecases import Outcome, UseCases, read
from bot.usecases.freeze import ALL, MAX_DURATION
from handlers.slack.middleware import ACK_FIRST

log = logging.getLogger("releasebot.slack")

PAGE_ACTION: Final = "release_list_page"
HISTORY_DEFAULT: Final = 10
HISTORY_MAX: Final = 50
STATUS_PAGE: Final = 30  # (service, environment) rows per page
PENDING_PAGE: Final = 10  # gates per page (two blocks each with their buttons)
METRICS_DEFAULT_DAYS: Final = 30
METRICS_MAX_DAYS: Final = 365
MAX_BLOCKS: Final = 50
SECTION_CHARS: Final = 2900  # Slack allows 3,000 per section text

SUBCOMMANDS: Final = (
    "help",
    "status",
    "history",
    "pending",
    "promote",
    "rollback",
    "freeze",
    "unfreeze",
    "metrics",
)
USAGE: Final[Mapping[str, str]] = {
    "help": "help",
    "status": "status [service]",
    "history": "history <service> [env] [n]",
    "pending": "pending",
    "promote": "promote <service> <version|latest> to <env>",
    "rollback": "rollback <service> <env> [to <version>] [-- reason...]",
    "freeze": "freeze <env|all> <duration> <reason...>",
    "unfreeze": "unfreeze <env|all>",
    "metrics": "metrics [service] [days]",
}
DESCRIPTIONS: Final[Mapping[str, str]] = {
    "help": "this list",
    "status": "what runs where, and what is on its way",
    "history": f"the last n deployments (default {HISTORY_DEFAULT}), newest first",
    "pending": "approvals waiting, with buttons on the ones you can decide",
    "promote": "send a release on to the next environment, through its gate",
    "rollback": "redeploy the last good version (or the one named) and lock promotion",
    "freeze": "stop deploys for a while, e.g. `freeze production 2h incident 4711`",
    "unfreeze": "lift a freeze started from Slack",
    "metrics": f"DORA metrics over the last days (default {METRICS_DEFAULT_DAYS})",
}


# --- parsing (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    service: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class History:
    service: str
    environment: str | None = None
    n: int = HISTORY_DEFAULT
    offset: int = 0


@dataclass(frozen=True)
class Pending:
    offset: int = 0


@dataclass(frozen=True)
class Promote:
    service: str
    version: str  # a version, a sha prefix, or "latest"
    environment: str


@dataclass(frozen=True)
class Rollback:
    service: str
    environment: str
    to_version: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Freeze:
    environment: str  # a name, or "all"
    duration: timedelta
    reason: str


@dataclass(frozen=True)
class Unfreeze:
    environment: str  # a name, or "all"


@dataclass(frozen=True)
class Metrics:
    service: str | None = None
    days: int = METRICS_DEFAULT_DAYS


@dataclass(frozen=True)
class Usage:
    """What was wrong with the input; `suggestion` is the closest valid word and `corrected`
    the whole command with it put in (without the slash command's own name)."""

    problem: str
    subcommand: str | None = None
    suggestion: str | None = None
    corrected: str | None = None


Command = Help | Status | History | Pending | Promote | Rollback | Freeze | Unfreeze | Metrics

_REASON_SPLIT = re.compile(r"(?:^|\s)(?:--|—|–)(?:\s+|$)")


@dataclass(frozen=True)
class _Names:
    """Services and their environments, for checking names and suggesting close ones."""

    services: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Config | None) -> _Names:
        if config is None:
            return cls()
        return cls(
            {name: [e.name for e in svc.environments] for name, svc in config.services.items()}
        )

    @property
    def known(self) -> bool:
        return bool(self.services)

    @property
    def environments(self) -> list[str]:
        return sorted({env for envs in self.services.values() for env in envs})


def parse(text: str, *, config: Config | None = None) -> Command | Usage:
    """The typed text (after the slash command's name) as a command, or what is wrong with it.

    Names are checked against `config` when given; without it any name is accepted.
    """
    text = _unescape(text).strip()
    tokens = text.split()
    if not tokens:
        return Help()
    names = _Names.of(config)
    sub = tokens[0].lower()
    args = tokens[1:]
    if sub in ("?", "-h", "--help"):
        sub = "help"
    if sub not in SUBCOMMANDS:
        close = _closest(sub, SUBCOMMANDS)
        return Usage(
            f"I don't know the command `{tokens[0]}`",
            subcommand=close,
            suggestion=close,
            corrected=" ".join([close, *args]) if close else None,
        )
    if sub == "help":
        topic = args[0].lower() if args else None
        return Help(topic if topic in SUBCOMMANDS else None)
    if sub == "status":
        if len(args) > 1:
            return _usage("status", f"`status` takes at most one service, not {len(args)} words")
        if not args:
            return Status()
        problem = _check_service(names, tokens, 1, "status")
        return problem or Status(args[0])
    if sub == "history":
        return _history(names, tokens)
    if sub == "pending":
        if args:
            return _usage("pending", "`pending` takes no arguments")
        return Pending()
    if sub == "promote":
        return _promote(names, tokens)
    if sub == "rollback":
        return _rollback(names, text)
    if sub == "freeze":
        return _freeze(names, text)
    if sub == "unfreeze":
        if len(args) != 1:
            return _usage("unfreeze", "say which environment to unfreeze (or `all`)")
        problem = _check_freeze_env(names, tokens, 1, "unfreeze")
        return problem or Unfreeze(_env_name(args[0]))
    return _metrics(names, tokens)


def _history(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if not args:
        return _usage("history", "say which service's history to show")
    if len(args) > 3:
        return _usage("history", "too many words for `history`")
    problem = _check_service(names, tokens, 1, "history")
    if problem:
        return problem
    service, environment, n = args[0], None, HISTORY_DEFAULT
    rest = args[1:]
    if rest and not rest[-1].isdecimal() and len(rest) == 2:
        return _usage("history", f"`{rest[-1]}` is not a number of deployments")
    if rest and rest[-1].isdecimal():
        n = int(rest[-1])
        rest = rest[:-1]
        if n < 1:
            return _usage("history", "show at least 1 deployment")
        n = min(n, HISTORY_MAX)
    if rest:
        problem = _check_env(names, tokens, 2, service, "history")
        if problem:
            return problem
        environment = rest[0]
    return History(service, environment, n)


def _promote(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if len(args) == 4 and args[2].lower() == "to":
        env_at = 4
    elif len(args) == 3 and args[2].lower() != "to":
        env_at = 3  # `promote checkout v1.2 production`: the "to" is optional
    else:
        return _usage("promote", "say what to promote where")
    problem = _check_service(names, tokens, 1, "promote") or _check_env(
        names, tokens, env_at, args[0], "promote"
    )
    if problem:
        return problem
    version = "latest" if args[1].lower() == "latest" else args[1]
    return Promote(args[0], version, tokens[env_at])


def _rollback(names: _Names, text: str) -> Command | Usage:
    head, *rest = _REASON_SPLIT.split(text, maxsplit=1)
    reason = rest[0].strip() if rest else None
    tokens = head.split()
    args = tokens[1:]
    if len(args) == 2:
        to_version = None
    elif len(args) == 4 and args[2].lower() == "to":
        to_version = args[3]
    else:
        return _usage("rollback", "say which service and environment to roll back")
    problem = _check_service(names, tokens, 1, "rollback") or _check_env(
        names, tokens, 2, args[0], "rollback"
    )
    if problem:
        return problem
    return Rollback(args[0], args[1], to_version, reason or None)


def _freeze(names: _Names, text: str) -> Command | Usage:
    parts = text.split(maxsplit=3)
    if len(parts) < 4:
        return _usage("freeze", "say which environment, for how long, and why")
    problem = _check_freeze_env(names, text.split(), 1, "freeze")
    if problem:
        return problem
    try:
        duration = parse_duration(parts[2])
    except PydanticCustomError:
        return _usage("freeze", f"`{parts[2]}` is not a duration: use 30m, 2h, 1d or 1h30m")
    if duration <= timedelta(0):
        return _usage("freeze", "a freeze needs a duration longer than 0s")
    if duration > MAX_DURATION:
        return _usage(
            "freeze",
            f"a freeze from Slack lasts at most {format_duration(MAX_DURATION)}; "
            "put longer ones in releasebot.yaml",
        )
    return Freeze(_env_name(parts[1]), duration, parts[3].strip())


def _metrics(names: _Names, tokens: list[str]) -> Command | Usage:
    args = tokens[1:]
    if len(args) > 2:
        return _usage("metrics", "too many words for `metrics`")
    service: str | None = None
    days = METRICS_DEFAULT_DAYS
    if args and args[-1].isdecimal():
        days = int(args[-1])
        args = args[:-1]
        if not 1 <= days <= METRICS_MAX_DAYS:
            return _usage("metrics", f"days must be between 1 and {METRICS_MAX_DAYS}")
    elif len(args) == 2:
        return _usage("metrics", f"`{args[1]}` is not a number of days")
    if args:
        problem = _check_service(names, tokens, 1, "metrics")
        if problem:
            return problem
        service = args[0]
    return Metrics(service, days)


def _check_service(names: _Names, tokens: list[str], at: int, sub: str) -> Usage | None:
    word = tokens[at]
    if not names.known or word in names.services:
        return None
    return _unknown(tokens, at, sub, f"there is no service `{word}`", list(names.services))


def _check_env(names: _Names, tokens: list[str], at: int, service: str, sub: str) -> Usage | None:
    word = tokens[at]
    envs = list(names.services.get(service, ()))
    if not names.known or word in envs:
        return None
    return _unknown(
        tokens, at, sub, f"{service} has no environment `{word}` (it has {', '.join(envs)})", envs
    )


def _check_freeze_env(names: _Names, tokens: list[str], at: int, sub: str) -> Usage | None:
    word = tokens[at]
    if word.lower() == ALL or not names.known or word in names.environments:
        return None
    return _unknown(
        tokens,
        at,
        sub,
        f"no service has an environment `{word}`",
        [*names.environments, ALL],
    )


def _unknown(tokens: list[str], at: int, sub: str, problem: str, options: Sequence[str]) -> Usage:
    close = _closest(tokens[at], options)
    corrected = None
    if close is not None:
        fixed = list(tokens)
        fixed[at] = close
        corrected = " ".join(fixed)
    return Usage(problem, sub, close, corrected)


def _usage(sub: str, problem: str) -> Usage:
    return Usage(problem, sub)


def _closest(word: str, options: Sequence[str]) -> str | None:
    """The closest option by difflib, else the only one that starts with `word` (`prod`)."""
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return by_lower[close[0]]
    starting = [option for lower, option in by_lower.items() if lower.startswith(word.lower())]
    return starting[0] if len(starting) == 1 and len(word) >= 2 else None


def _env_name(word: str) -> str:
    return ALL if word.lower() == ALL else word


def _unescape(text: str) -> str:
    """Slack escapes `&`, `<` and `>` in what people type; undo it (ampersand last)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- answering -------------------------------------------------------------------------------


@dataclass
class Reply:
    text: str  # the notification fallback, and the whole answer when there are no blocks
    blocks: list[dict[str, Any]] = field(default_factory=list)
    announcements: list[tuple[str, str]] = field(default_factory=list)  # (channel, text)


def register_commands(app: AsyncApp, usecases: UseCases, command_name: str) -> None:
    """One listener for the slash command and one for the list pages' "Next" buttons."""

    @app.command(command_name, middleware=ACK_FIRST)
    async def command(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        user = str(body.get("user_id") or "")
        parsed = parse(str(body.get("text") or ""), config=usecases.config)
        try:
            reply = await answer(usecases, parsed, user_id=user, command_name=command_name)
        except Exception:
            log.exception("%s failed for %s", command_name, user)
            reply = Reply(":warning: Something went wrong on my side; please try again.")
        await _send(client, respond, body, reply)
        for channel, text in reply.announcements:
            await _announce(client, channel, text)

    @app.action(PAGE_ACTION, middleware=ACK_FIRST)
    async def page(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        try:
            value = json.loads(body["actions"][0]["value"])
            parsed = parse(str(value["t"]), config=usecases.config)
            offset = max(int(value["o"]), 0)
        except (KeyError, IndexError, TypeError, ValueError):
            log.warning("ignoring a page click without a valid value")
            return
        if not isinstance(parsed, Status | History | Pending):
            return
        parsed = dataclasses.replace(parsed, offset=offset)
        user = str(body.get("user", {}).get("id") or "")
        reply = await answer(usecases, parsed, user_id=user, command_name=command_name)
        await _send(client, respond, body, reply, replace=True)


async def answer(
    usecases: UseCases, parsed: Command | Usage, *, user_id: str, command_name: str
) -> Reply:
    """What to tell the person (and the channels) for one parsed command."""
    if isinstance(parsed, Usage):
        return _usage_reply(parsed, command_name)
    if isinstance(parsed, Help):
        return _help_reply(command_name, parsed.topic)
    if isinstance(parsed, Status):
        return await _status(usecases, parsed)
    if isinstance(parsed, History):
        return await _history_reply(usecases, parsed)
    if isinstance(parsed, Pending):
        return await _pending(usecases, parsed, user_id)
    if isinstance(parsed, Promote):
        outcome = await usecases.promote_version(
            user_id=user_id,
            service=parsed.service,
            version=parsed.version,
            environment=parsed.environment,
        )
        return _operation_reply(usecases.config, outcome, parsed.service, user_id)
    if isinstance(parsed, Rollback):
        reason = parsed.reason or f"rolled back with {command_name} by {user_id}"
        outcome = await usecases.rollback_environment(
            user_id=user_id,
            service=parsed.service,
            environment=parsed.environment,
            to_version=parsed.to_version,
            reason=reason,
        )
        return _operation_reply(usecases.config, outcome, parsed.service, user_id, reason)
    if isinstance(parsed, Freeze):
        frozen = await usecases.freeze(
            user_id=user_id,
            environment=parsed.environment,
            duration=parsed.duration,
            reason=parsed.reason,
        )
        return _freeze_reply(usecases.config, frozen, user_id)
    if isinstance(parsed, Unfreeze):
        lifted = await usecases.unfreeze(user_id=user_id, environment=parsed.environment)
        return _freeze_reply(usecases.config, lifted, user_id)
    return await _metrics_reply(usecases, parsed)


def _usage_reply(usage: Usage, command_name: str) -> Reply:
    line = f":warning: {escape_mrkdwn(_sentence(usage.problem))}."
    if usage.suggestion is not None:
        line += f" Did you mean `{escape_mrkdwn(usage.suggestion)}`?"
        if usage.corrected:
            line += f" Try `{escape_mrkdwn(f'{command_name} {usage.corrected}')}`."
    if usage.subcommand is not None:
        text = f"{line}\nUsage: `{command_name} {USAGE[usage.subcommand]}`"
        return Reply(text, [_section(text)])
    help_reply = _help_reply(command_name)
    return Reply(f"{line}\n{help_reply.text}", [_section(line), *help_reply.blocks])


def _help_reply(command_name: str, topic: str | None = None) -> Reply:
    chosen = [topic] if topic else list(SUBCOMMANDS)
    lines = [f"`{command_name} {USAGE[sub]}`: {DESCRIPTIONS[sub]}" for sub in chosen]
    text = "\n".join(lines)
    if topic is None:
        text = f"*{command_name}* talks to releasebot:\n{text}"
    return Reply(text, [_section(text)])


# --- status, history, pending ----------------------------------------------------------------


async def _status(usecases: UseCases, cmd: Status) -> Reply:
    pairs = usecases.environments_of(cmd.service)
    chosen = pairs[cmd.offset : cmd.offset + STATUS_PAGE]
    rows = await usecases.status(chosen)
    title = f"*Status of {escape_mrkdwn(cmd.service)}*" if cmd.service else "*Status*"
    lines: list[str] = []
    current: str | None = None
    for row in rows:
        if row.service != current:
            current = row.service
            lines.append(f"*{escape_mrkdwn(row.service)}*")
        lines.append(_status_line(row))
    if not lines:
        lines.append("No services are configured.")
    more = cmd.offset + STATUS_PAGE < len(pairs)
    return _list_reply(
        title=title,
        lines=lines,
        fallback=f"Status: {len(rows)} environments",
        page=_page_info(cmd.offset, len(chosen), len(pairs)),
        next_value=_next(_status_text(cmd), cmd.offset + STATUS_PAGE) if more else None,
    )


def _status_text(cmd: Status) -> str:
    return f"status {cmd.service}" if cmd.service else "status"


def _status_line(row: read.StatusRow) -> str:
    env = f"`{escape_mrkdwn(row.environment)}`"
    if row.latest is None:
        text = f"• {env} nothing deployed yet"
    else:
        text = f"• {env} {state_label(row.latest.state)} {_label(row.latest)}"
        if row.running is not None and row.running.deployment_id != row.latest.deployment_id:
            text += f" · running {_label(row.running)}"
        text += f" · {clock_time(row.latest.updated_at)}"
    if row.freeze:
        text += f" · :snowflake: frozen: {escape_mrkdwn(_cut(row.freeze, 200))}"
    if row.lock:
        text += " · :lock: automatic promotion stopped"
    return text


async def _history_reply(usecases: UseCases, cmd: History) -> Reply:
    page = await usecases.history(
        service=cmd.service, environment=cmd.environment, limit=cmd.n, offset=cmd.offset
    )
    where = f"{cmd.service} in {cmd.environment}" if cmd.environment else cmd.service
    lines = [_history_line(row, with_env=cmd.environment is None) for row in page.rows]
    if not lines:
        lines.append("No deployments." if cmd.offset == 0 else "No older deployments.")
    text = " ".join(
        ["history", cmd.service, *([cmd.environment] if cmd.environment else []), str(cmd.n)]
    )
    shown = f"{cmd.offset + 1}-{cmd.offset + len(page.rows)}" if page.rows else "none"
    return _list_reply(
        title=f"*History of {escape_mrkdwn(where)}*",
        lines=lines,
        fallback=f"History of {where}: {len(page.rows)} deployments",
        page=f"deployments {shown}, newest first",
        next_value=_next(text, cmd.offset + cmd.n) if page.has_more else None,
    )


def _history_line(row: read.DeploymentRow, *, with_env: bool) -> str:
    parts = [clock_time(row.created_at)]
    if with_env:
        parts.append(f"`{escape_mrkdwn(row.environment)}`")
    parts.append(f"{state_label(row.state)} {_label(row)}")
    if row.risk_level:
        parts.append(f"{risk_label(row.risk_level)} {escape_mrkdwn(row.risk_level)} risk")
    if row.deployer:
        parts.append(f"by {escape_mrkdwn(_cut(row.deployer, 60))}")
    links = [
        text
        for text in (_message_link(row), str(link(row.ci_url, "CI")) if row.ci_url else None)
        if text
    ]
    return "• " + " · ".join([*parts, *links])


async def _pending(usecases: UseCases, cmd: Pending, user_id: str) -> Reply:
    gates = await usecases.pending_approvals(user_id)
    gates.sort(key=lambda g: not g.can_act)  # the ones waiting for this person first
    chosen = gates[cmd.offset : cmd.offset + PENDING_PAGE]
    blocks: list[dict[str, Any]] = [_section(f"*Pending approvals* ({len(gates)})")]
    if not gates:
        blocks = [_section("*Pending approvals*\nNothing is waiting for an approval.")]
    for gate in chosen:
        blocks.extend(approval_blocks(gate))
    info = _page_info(cmd.offset, len(chosen), len(gates))
    if info:
        blocks.append(_context(info))
    if cmd.offset + PENDING_PAGE < len(gates):
        blocks.append(_next_button(_next("pending", cmd.offset + PENDING_PAGE)))
    yours = sum(1 for g in gates if g.can_act)
    noun = "approval" if len(gates) == 1 else "approvals"
    return Reply(f"{len(gates)} pending {noun}, {yours} for you", _fit(blocks))


def approval_blocks(gate: read.PendingApproval) -> list[dict[str, Any]]:
    """A gate as a section, with Approve/Reject (the release message's action ids and
    values, so the usual listeners decide it) when the viewer can act on it."""
    row = gate.deployment
    lines = [
        f"*{escape_mrkdwn(row.service)}* → *{escape_mrkdwn(row.environment)}* {_label(row)}"
        + (
            f" · {risk_label(row.risk_level)} {escape_mrkdwn(row.risk_level)} risk"
            if row.risk_level
            else ""
        )
    ]
    if gate.progress:
        lines.append(escape_mrkdwn(_cut(gate.progress, 500)))
    elif gate.requirement:
        lines.append(f"needs {escape_mrkdwn(_cut(gate.requirement, 500))}")
    when = f"waiting since {clock_time(gate.opened_at)}"
    if gate.expires_at is not None:
        when += f", expires {clock_time(gate.expires_at)}"
    message = _message_link(row)
    lines.append(when + (f" · {message}" if message else ""))
    blocks: list[dict[str, Any]] = [_section("\n".join(lines))]
    if gate.can_act:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"gate_{gate.gate_id}",
                "elements": [
                    _button("Approve", "release_approve", str(gate.gate_id), style="primary"),
                    _button("Reject", "release_reject", str(gate.gate_id), style="danger"),
                ],
            }
        )
    return blocks


# --- actions ---------------------------------------------------------------------------------

ICONS: Final = {
    "promoted": ":rocket:",
    "rolling_back": ":leftwards_arrow_with_hook:",
    "refused": ":no_entry_sign:",
    "frozen": ":snowflake:",
    "lifted": ":sunny:",
}


def _operation_reply(
    config: Config, outcome: Outcome, service: str, user_id: str, reason: str | None = None
) -> Reply:
    text = f"{ICONS.get(outcome.result, '')} {escape_mrkdwn(outcome.message)}".strip()
    reply = Reply(text)
    if outcome.result != "refused":
        said = f"{ICONS.get(outcome.result, '')} {mention(user_id)} *{escape_mrkdwn(service)}*: "
        said += escape_mrkdwn(outcome.message)
        if reason:
            said += f" ({escape_mrkdwn(_cut(reason, 500))})"
        reply.announcements.append((config.channel_for(service), said))
    return reply


def _freeze_reply(config: Config, outcome: read.FreezeOutcome, user_id: str) -> Reply:
    text = f"{ICONS.get(outcome.result, '')} {escape_mrkdwn(outcome.message)}".strip()
    reply = Reply(text)
    if outcome.result == "refused" or outcome.environment is None:
        return reply
    where = "every environment" if outcome.environment == ALL else outcome.environment
    if outcome.result == "frozen":
        said = (
            f":snowflake: {mention(user_id)} froze deploys to *{escape_mrkdwn(where)}* until "
            f"{clock_time(outcome.end)}: {escape_mrkdwn(outcome.reason or '')}"
        )
    else:
        said = f":sunny: {mention(user_id)} {escape_mrkdwn(outcome.message)}"
    for channel in _channels_with(config, outcome.environment):
        reply.announcements.append((channel, said))
    return reply


def _channels_with(config: Config, environment: str) -> list[str]:
    """The channels of the services a freeze on `environment` touches, once each."""
    channels = [
        config.channel_for(name)
        for name, svc in config.services.items()
        if environment == ALL or svc.environment(environment) is not None
    ]
    return list(dict.fromkeys(channels)) or [config.slack.default_channel]


async def _metrics_reply(usecases: UseCases, cmd: Metrics) -> Reply:
    message = await usecases.metrics_message(service=cmd.service, days=cmd.days)
    return Reply(message.text, _fit(list(message.blocks)))


# --- Block Kit helpers -----------------------------------------------------------------------


def _list_reply(
    *, title: str, lines: list[str], fallback: str, page: str | None, next_value: str | None
) -> Reply:
    blocks: list[dict[str, Any]] = [_section(title)]
    blocks.extend(_section(chunk) for chunk in _chunks(lines))
    if page:
        blocks.append(_context(page))
    if next_value is not None:
        blocks.append(_next_button(next_value))
    return Reply(fallback, _fit(blocks))


def _chunks(lines: list[str], limit: int = SECTION_CHARS) -> list[str]:
    """Lines joined into section texts of at most `limit` characters each."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = _cut(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def _fit(blocks: list[dict[str, Any]], limit: int = MAX_BLOCKS) -> list[dict[str, Any]]:
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    return [*kept, _context(f"and {len(blocks) - len(kept)} more blocks not shown")]


def _page_info(offset: int, shown: int, total: int) -> str | None:
    if total <= shown and offset == 0:
        return None
    return f"{offset + 1}-{offset + shown} of {total}" if shown else f"none of {total}"


def _next(text: str, offset: int) -> str:
    return json.dumps({"t": text, "o": offset}, separators=(",", ":"))


def _next_button(value: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "page",
        "elements": [_button("Next page", PAGE_ACTION, value)],
    }


def _button(text: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 3000)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(text, 3000)}]}


def _label(row: read.DeploymentRow) -> str:
    if row.version:
        return f"*{escape_mrkdwn(_cut(row.version, 80))}* (`{row.short_sha}`)"
    return f"`{row.short_sha}`"


def _message_link(row: read.DeploymentRow) -> str | None:
    """A link to the release message, when Slack gave us its channel id and ts."""
    if not row.channel or not row.ts or not row.channel.startswith(("C", "G")):
        return None
    return str(
        link(f"https://slack.com/archives/{row.channel}/p{row.ts.replace('.', '')}", "message")
    )


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


async def _send(
    client: AsyncWebClient,
    respond: Any,
    body: dict[str, Any],
    reply: Reply,
    *,
    replace: bool = False,
) -> None:
    """Answer only the person: through the `response_url`, else an ephemeral message."""
    response_url = body.get("response_url")
    payload: dict[str, Any] = {"text": reply.text, "response_type": "ephemeral"}
    if reply.blocks:
        payload["blocks"] = reply.blocks
    if replace:
        payload["replace_original"] = True
    try:
        if response_url:
            answer = await respond(**payload)
            if answer.status_code != 200:
                log.warning("response_url answered %s: %s", answer.status_code, answer.body)
            return
        channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        if channel and user:
            await client.chat_postEphemeral(
                channel=str(channel), user=str(user), text=reply.text, blocks=reply.blocks or None
            )
    except Exception:
        log.exception("could not answer the slash command")


async def _announce(client: AsyncWebClient, channel: str, text: str) -> None:
    try:
        await client.chat_postMessage(channel=channel, text=text)
    except Exception:
        log.exception("could not announce in %s", channel)
