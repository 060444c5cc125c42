"""Log lines as text or as one JSON object per line, carrying the ids of what is being done.

    configure_logging(level="INFO", fmt="json", secrets=[...])   # once, by `releasebot serve`
    with log_context(gate_id=7, deployment_id=3):
        log.info("gate decided")     # {"ts": ..., "level": "INFO", ..., "gate_id": 7, ...}

The ids live in a context variable, so they follow a request or a use case through every
`await` and into code run with `asyncio.to_thread` (which copies the context), and tasks
started inside inherit them. A JSON line has `ts`, `level`, `logger` and `message`, then
each of `request_id`, `delivery_id`, `deployment_id`, `release_id`, `gate_id`, `check_run_id`
and `outbox_id` that applies, and `exc` for an exception. Every configured secret value is
replaced by `[redacted]` in both formats before a line is written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from functools import wraps
from inspect import signature
from types import MappingProxyType
from typing import IO, Any, ParamSpec, TypeVar

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The ids a line may carry, in the order a JSON line lists them.
FIELDS = (
    "request_id",
    "delivery_id",
    "deployment_id",
    "release_id",
    "gate_id",
    "check_run_id",
    "outbox_id",
)
REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_MAX = 128
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:/+=-]{{1,{REQUEST_ID_MAX}}}")
REDACTED = "[redacted]"
HANDLER_NAME = "releasebot"
# Shorter values than this are not secrets worth the false matches (and "1" would be everywhere).
_MIN_SECRET = 6

_FIELD_SET = frozenset(FIELDS)
_REQUEST_IDS = random.Random()  # seeded from the system; nothing else reseeds it
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REQUEST_IDS.seed)
_NO_IDS: Mapping[str, object] = MappingProxyType({})
_ids: ContextVar[Mapping[str, object]] = ContextVar("releasebot_log_ids", default=_NO_IDS)

P = ParamSpec("P")
T = TypeVar("T")


def current_ids() -> dict[str, object]:
    """The ids bound in this context (a copy)."""
    return dict(_ids.get())


def log_context(**ids: object) -> _Bound:
    """Bind ids (those that are not None) to every line logged inside the `with` block."""
    known = {name: value for name, value in ids.items() if value is not None}
    if not known.keys() <= _FIELD_SET:
        unknown = known.keys() - _FIELD_SET
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))}")
    return _Bound(known)


class _Bound:
    """`log_context`'s block (a class, not a generator: every request enters one)."""

    __slots__ = ("_known", "_token")

    def __init__(self, known: dict[str, object]) -> None:
        self._known = known
        self._token: Token[Mapping[str, object]] | None = None

    def __enter__(self) -> None:
        self._token = _ids.set(MappingProxyType({**_ids.get(), **self._known}))

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _ids.reset(self._token)


def logged_ids(
    *names: str,
) -> Callable[
    [Callable[P, Coroutine[Any, Any, T]]],
    Callable[P, Coroutine[Any, Any, T]],
]:
    """Bind the named keyword parameters of an async function (e.g. `gate_id`) for its call."""
    missing = set(names) - set(FIELDS)
    if missing:
        raise ValueError(f"not a log field: {', '.join(sorted(missing))}")

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        params = signature(fn)

        @wraps(fn)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            given = params.bind_partial(*args, **kwargs).arguments
            with log_context(**{name: given.get(name) for name in names}):
                return await fn(*args, **kwargs)

        return call

    return decorate


def request_id_from(value: str | None) -> str:
    """The caller's X-Request-Id when it is a plain token of at most 128 characters, or a
    new one (32 hex digits)."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    # A label to tell requests apart, not a secret: a generator of its own (reseeded in a
    # forked child) spares every request a system call for fresh randomness.
    return f"{_REQUEST_IDS.getrandbits(128):032x}"


class _ContextIds(logging.Filter):
    """Copies the bound ids onto each record (an explicit `extra=` id wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _ids.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


class TextFormatter(logging.Formatter):
    """The classic `time level logger: message` line, secrets redacted."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the ids that apply, exc."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int | float) else self._redact(str(value))
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = self._redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_handler(
    fmt: str, *, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Handler:
    """A stream handler (stderr by default) writing `fmt` lines with the bound ids."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler.setFormatter(formatter(secrets=secrets))
    handler.addFilter(_ContextIds())
    return handler


def configure_logging(
    *, level: str, fmt: str, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> None:
    """Send every logger's lines through one handler on the root logger, in `fmt` (a second
    call replaces the handler the first one added)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = make_handler(fmt, secrets=secrets, stream=stream)
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The scheduler's executor says "Running job" and "executed successfully" for each run
    # of jobs that run twice a second: only at DEBUG.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    logging.getLogger("apscheduler.executors.default").setLevel(quiet)
