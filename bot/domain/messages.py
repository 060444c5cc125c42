"""Outbox messages: one frozen model per kind of side effect the services queue.

A message names its kind (`KIND`), the outbox `key` that orders it among its siblings (one
deployment's Slack message and its thread share a key), and its JSON payload. The payload
keys are the wire format of rows already in the database: `from_payload(to_payload())`
round-trips, and `from_payload` reads every row the services ever wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

from bot.domain.events import DeployEvent, event_from_dict, event_to_dict

Payload = dict[str, Any]


class Message(Protocol):
    """What `outbox.enqueue` writes: a kind, a key and a JSON payload."""

    KIND: ClassVar[str]

    @property
    def key(self) -> str: ...

    def to_payload(self) -> Payload: ...


def _deployment_key(deployment_id: int) -> str:
    return f"deployment:{deployment_id}"


@dataclass(frozen=True)
class ReleaseMessageUpdate:
    """Post the deployment's release message, or edit it to show the current state."""

    KIND: ClassVar[str] = "slack.release_message"
    deployment_id: int

    @property
    def key(self) -> str:
        return _deployment_key(self.deployment_id)

    def to_payload(self) -> Payload:
        return {"deployment_id": self.deployment_id}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ReleaseMessageUpdate:
        return cls(int(payload["deployment_id"]))


@dataclass(frozen=True)
class StateChangeLine:
    """A thread line saying the deployment moved from one state to another."""

    KIND: ClassVar[str] = "slack.thread_reply"
    deployment_id: int
    from_state: str | None
    to_state: str
    at: str  # ISO 8601
    actor: str
    url: str | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return _deployment_key(self.deployment_id)

    def to_payload(self) -> Payload:
        return {
            "deployment_id": self.deployment_id,
            "from": self.from_state,
            "to": self.to_state,
            "at": self.at,
            "actor": self.actor,
            "url": self.url,
            "note": self.note,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StateChangeLine:
        return cls(
            deployment_id=int(payload["deployment_id"]),
            from_state=payload.get("from"),
            to_state=str(payload["to"]),
            at=str(payload.get("at") or ""),
            actor=str(payload.get("actor") or ""),
            url=payload.get("url"),
            note=payload.get("note"),
        )


@dataclass(frozen=True)
class _TemplatedText:
    """Text rendered from a named template with its fields, about one deployment."""

    KIND: ClassVar[str]
    deployment_id: int
    template: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _deployment_key(self.deployment_id)

    def to_payload(self) -> Payload:
        return {"deployment_id": self.deployment_id, "template": self.template, **self.fields}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        fields = {k: v for k, v in payload.items() if k not in ("deployment_id", "template")}
        return cls(int(payload["deployment_id"]), str(payload.get("template", "")), fields)


@dataclass(frozen=True)
class TemplateLine(_TemplatedText):
    """A thread line rendered from a named template with its fields (a check result, a
    reminder, a deployer's answer, a note)."""

    KIND: ClassVar[str] = "slack.thread_reply"


@dataclass(frozen=True)
class OncallLine(_TemplatedText):
    """A thread line mentioning on-call (a failed verification, an escalated gate): when
    it is sent, the people on call now for the service (PagerDuty) replace the Slack group
    its field `oncall_field` holds, which stays the fallback; `service` names whose."""

    KIND: ClassVar[str] = "slack.oncall_line"


ThreadReply = StateChangeLine | TemplateLine


# A thread-line row's payload may carry the lines queued after it while it waited: one
# reply, its own line first.
MORE_LINES = "more"


def with_line(payload: Mapping[str, Any], line: Mapping[str, Any]) -> Payload:
    """A thread-line row's payload with one more line to send in the same reply."""
    return {**payload, MORE_LINES: [*payload.get(MORE_LINES, ()), dict(line)]}


def lines_of(payload: Mapping[str, Any]) -> list[Payload]:
    """Each line a thread-line row sends, in order: its own, then those added to it."""
    own = {k: v for k, v in payload.items() if k != MORE_LINES}
    return [own, *(dict(line) for line in payload.get(MORE_LINES, ()))]


def thread_reply_from_payload(payload: Mapping[str, Any]) -> ThreadReply:
    """A thread line in either shape: a template and its fields, or a state change."""
    if "template" in payload:
        return TemplateLine.from_payload(payload)
    return StateChangeLine.from_payload(payload)


@dataclass(frozen=True)
class Announcement(_TemplatedText):
    """A line in the channel itself, linked to the release message (break-glass)."""

    KIND: ClassVar[str] = "slack.announcement"


@dataclass(frozen=True)
class DirectMessage:
    """A direct message to one person (an approver asked again when a gate escalates);
    Slack opens the conversation with the bot when the channel is the user's id."""

    KIND: ClassVar[str] = "slack.direct_message"
    user_id: str
    text: str

    @property
    def key(self) -> str:
        return f"dm:{self.user_id}"

    def to_payload(self) -> Payload:
        return {"user_id": self.user_id, "text": self.text}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DirectMessage:
        return cls(str(payload["user_id"]), str(payload["text"]))


@dataclass(frozen=True)
class Assess:
    """Fetch the deployment's commits and score its risk."""

    KIND: ClassVar[str] = "deployment.assess"
    deployment_id: int

    @property
    def key(self) -> str:
        return f"assess:{self.deployment_id}"

    def to_payload(self) -> Payload:
        return {"deployment_id": self.deployment_id}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Assess:
        return cls(int(payload["deployment_id"]))


@dataclass(frozen=True)
class ResolveSha:
    """A webhook named its commit by a short sha: fetch the full one, then apply the event."""

    KIND: ClassVar[str] = "deployment.resolve_sha"
    provider: str
    project: str
    deployment_id: int  # the provider's deployment id, not releasebot's (0: not known)
    event: DeployEvent
    environment: str | None = None  # set: find the deployment of this environment waiting

    @property
    def key(self) -> str:
        if self.environment is not None:
            return f"lookup:{self.provider}:{self.project}:{self.environment}"
        return f"lookup:{self.provider}:{self.deployment_id}"

    def to_payload(self) -> Payload:
        payload: Payload = {
            "provider": self.provider,
            "project": self.project,
            "deployment_id": self.deployment_id,
            "event": event_to_dict(self.event),
        }
        if self.environment is not None:
            payload["environment"] = self.environment
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ResolveSha:
        environment = payload.get("environment")
        return cls(
            provider=str(payload["provider"]),
            project=str(payload["project"]),
            deployment_id=int(payload["deployment_id"]),
            event=event_from_dict(dict(payload["event"])),
            environment=str(environment) if environment is not None else None,
        )


@dataclass(frozen=True)
class DeployerCall:
    """Carry a decision or an action (approve, reject, rollback) to the real pipeline."""

    KIND: ClassVar[str] = "deployer.execute"
    deployment_id: int
    kind: str  # the deployer: github_environments, argo_rollouts, ...
    action: str
    request_id: str
    context: Mapping[str, Any] = field(default_factory=dict)
    actor: str = ""
    reason: str | None = None
    sha: str | None = None  # a rollback's target

    @property
    def key(self) -> str:
        return f"deploy:{self.deployment_id}"

    def to_payload(self) -> Payload:
        payload: Payload = {
            "deployment_id": self.deployment_id,
            "kind": self.kind,
            "action": self.action,
        }
        if self.sha is not None:
            payload["sha"] = self.sha
        payload.update(
            request_id=self.request_id,
            context=dict(self.context),
            actor=self.actor,
            reason=self.reason,
        )
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeployerCall:
        return cls(
            deployment_id=int(payload["deployment_id"]),
            kind=str(payload["kind"]),
            action=str(payload["action"]),
            request_id=str(payload["request_id"]),
            context=dict(payload.get("context") or {}),
            actor=str(payload.get("actor") or ""),
            reason=payload.get("reason"),
            sha=payload.get("sha"),
        )


@dataclass(frozen=True)
class PagerChange:
    """A change event on the service's on-call timeline; informational, never pages."""

    KIND: ClassVar[str] = "pager.change"
    deployment_id: int
    what: str  # deploy, rollback, break-glass
    summary: str

    @property
    def key(self) -> str:
        return f"pager:{self.deployment_id}"

    def to_payload(self) -> Payload:
        return {"deployment_id": self.deployment_id, "what": self.what, "summary": self.summary}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PagerChange:
        return cls(
            int(payload["deployment_id"]), str(payload.get("what", "")), str(payload["summary"])
        )


@dataclass(frozen=True)
class PagerAlert:
    """Page on-call (trigger) or close the alert (resolve)."""

    KIND: ClassVar[str] = "pager.alert"
    deployment_id: int
    action: str  # trigger | resolve
    dedup_key: str | None
    summary: str
    severity: str | None = None

    @property
    def key(self) -> str:
        return f"pager:{self.deployment_id}"

    def to_payload(self) -> Payload:
        payload: Payload = {
            "deployment_id": self.deployment_id,
            "action": self.action,
            "dedup_key": self.dedup_key,
            "summary": self.summary,
        }
        if self.severity is not None:
            payload["severity"] = self.severity
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PagerAlert:
        return cls(
            deployment_id=int(payload["deployment_id"]),
            action=str(payload["action"]),
            dedup_key=payload.get("dedup_key"),
            summary=str(payload["summary"]),
            severity=payload.get("severity"),
        )


@dataclass(frozen=True)
class Digest:
    """The weekly DORA digest, posted to a channel."""

    KIND: ClassVar[str] = "slack.digest"
    KEY: ClassVar[str] = "digest"
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None = None

    @property
    def key(self) -> str:
        return self.KEY

    def to_payload(self) -> Payload:
        return {"channel": self.channel, "text": self.text, "blocks": self.blocks}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Digest:
        blocks = payload.get("blocks")
        return cls(
            str(payload["channel"]),
            str(payload["text"]),
            blocks if isinstance(blocks, list) else None,
        )


@dataclass(frozen=True)
class DeployMarker:
    """Mark a deploy event on an observability tool's timeline (`platform`: grafana,
    datadog or newrelic).

    `event` is deploy, rollback, break_glass or verification_failed; `phase` is `start` (a
    deploy began: Grafana opens a region), `end` (it finished: the region closes, Datadog
    and New Relic hear of it) or `point` (a moment). Times are ISO 8601. One key per
    deployment and platform, so a region's end is sent after its start.
    """

    KIND: ClassVar[str] = "marker.send"
    deployment_id: int
    platform: str
    event: str
    phase: str
    service: str
    environment: str
    version: str
    title: str
    text: str
    started_at: str
    ended_at: str | None = None
    outcome: str = ""  # succeeded | failed, for a deploy's end

    @property
    def key(self) -> str:
        return f"marker:{self.deployment_id}:{self.platform}"

    def to_payload(self) -> Payload:
        return {
            "deployment_id": self.deployment_id,
            "platform": self.platform,
            "event": self.event,
            "phase": self.phase,
            "service": self.service,
            "environment": self.environment,
            "version": self.version,
            "title": self.title,
            "text": self.text,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeployMarker:
        ended = payload.get("ended_at")
        return cls(
            deployment_id=int(payload["deployment_id"]),
            platform=str(payload["platform"]),
            event=str(payload["event"]),
            phase=str(payload.get("phase") or "point"),
            service=str(payload["service"]),
            environment=str(payload["environment"]),
            version=str(payload.get("version") or ""),
            title=str(payload.get("title") or ""),
            text=str(payload.get("text") or ""),
            started_at=str(payload["started_at"]),
            ended_at=str(ended) if ended is not None else None,
            outcome=str(payload.get("outcome") or ""),
        )
