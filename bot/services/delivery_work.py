"""What a stored delivery asks the applier to do, as JSON on its row (`webhook_delivery.work`).

The request parses the delivery and stores the result; the applier (and a replay) reads it
back without the provider's parser: the event, the note saying why there is nothing to
track, the commit list a generic webhook carried, or the sha the worker still looks up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bot.domain.events import DeployEvent, event_from_dict, event_to_dict
from bot.domain.ingest import ShaLookup
from bot.ports import Commit, Comparison


@dataclass(frozen=True)
class Work:
    """One delivery's event (or lookup) with what came with it."""

    event: DeployEvent | None = None
    note: str | None = None
    commits: Comparison | None = None
    lookup: ShaLookup | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.event is not None:
            data["event"] = event_to_dict(self.event)
        if self.note is not None:
            data["note"] = self.note
        if self.commits is not None:
            data["commits"] = [_commit_to_dict(c) for c in self.commits.commits]
            data["total_commits"] = self.commits.total_commits
        if self.lookup is not None:
            data["lookup"] = {
                "provider": self.lookup.provider,
                "project": self.lookup.project,
                "deployment_id": self.lookup.deployment_id,
                "event": event_to_dict(self.lookup.event),
                "environment": self.lookup.environment,
            }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Work:
        event = event_from_dict(dict(data["event"])) if data.get("event") else None
        commits = None
        if data.get("commits") is not None:
            listed = tuple(_commit_from_dict(c) for c in data["commits"])
            commits = Comparison(
                commits=listed,
                files=(),
                total_commits=int(data.get("total_commits", len(listed))),
                truncated=False,
            )
        lookup = None
        if data.get("lookup"):
            found = data["lookup"]
            lookup = ShaLookup(
                provider=str(found["provider"]),
                project=str(found["project"]),
                deployment_id=int(found["deployment_id"]),
                event=event_from_dict(dict(found["event"])),
                environment=found.get("environment"),
            )
        note = data.get("note")
        return cls(
            event=event,
            note=str(note) if note is not None else None,
            commits=commits,
            lookup=lookup,
        )


def _commit_to_dict(commit: Commit) -> dict[str, Any]:
    data = asdict(commit)
    data["authored_at"] = commit.authored_at.isoformat() if commit.authored_at else None
    return data


def _commit_from_dict(data: dict[str, Any]) -> Commit:
    values = dict(data)
    if values.get("authored_at"):
        values["authored_at"] = datetime.fromisoformat(values["authored_at"])
    return Commit(**values)
