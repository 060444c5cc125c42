"""Argo Rollouts seen through Argo CD: where a canary stands, and the outbox messages that
read it and act on it (pure; no I/O).

A Rollout is named by what Argo CD's resource APIs take: the Argo CD application, and the
resource's namespace, name and API version (kind `Rollout`, group `argoproj.io`).
`status_of` reads the live manifest Argo CD returns (`GET /api/v1/applications/{app}/resource`)
into a `RolloutStatus`, and `describe` words it as the release message shows it
("canary 2/5, paused").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

KIND = "Rollout"
GROUP = "argoproj.io"
# Argo CD's health of a Rollout that still moves or waits for someone ("Paused" is what
# some Argo CD versions and the Rollouts UI say for Suspended).
ACTIVE_HEALTH = ("Progressing", "Suspended", "Paused")
PROMOTE_ACTIONS = ("resume", "promote-full")
ABORT_ACTION = "abort"


@dataclass(frozen=True)
class RolloutRef:
    """One Rollout of one Argo CD application."""

    app: str
    name: str
    namespace: str = ""
    version: str = "v1alpha1"

    def to_payload(self) -> dict[str, str]:
        return {
            "app": self.app,
            "name": self.name,
            "namespace": self.namespace,
            "version": self.version,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RolloutRef:
        return cls(
            app=str(payload["app"]),
            name=str(payload["name"]),
            namespace=str(payload.get("namespace") or ""),
            version=str(payload.get("version") or "v1alpha1"),
        )


@dataclass(frozen=True)
class RolloutStatus:
    """Where a Rollout stands: its strategy, the step it is at (1-based, of `steps`),
    whether it waits for someone, and its phase as Argo Rollouts reports it."""

    strategy: str
    step: int | None
    steps: int | None
    paused: bool
    aborted: bool
    phase: str
    message: str = ""

    @property
    def active(self) -> bool:
        """Still progressing or waiting: Promote and Abort mean something."""
        return not self.aborted and self.phase not in ("Healthy", "Degraded")

    def to_details(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "step": self.step,
            "steps": self.steps,
            "paused": self.paused,
            "aborted": self.aborted,
            "phase": self.phase,
            "message": self.message,
        }

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> RolloutStatus:
        step, steps = details.get("step"), details.get("steps")
        return cls(
            strategy=str(details.get("strategy") or "canary"),
            step=step if isinstance(step, int) else None,
            steps=steps if isinstance(steps, int) else None,
            paused=bool(details.get("paused")),
            aborted=bool(details.get("aborted")),
            phase=str(details.get("phase") or ""),
            message=str(details.get("message") or ""),
        )


def status_of(manifest: Mapping[str, Any]) -> RolloutStatus:
    """Read a Rollout's live manifest: `spec.strategy.canary.steps`, `status.currentStepIndex`
    (0-based; equal to the number of steps once every step ran), `status.pauseConditions`,
    `spec.paused`, `status.abort` and `status.phase`."""
    spec = _mapping(manifest.get("spec"))
    status = _mapping(manifest.get("status"))
    strategy = _mapping(spec.get("strategy"))
    name = "blue-green" if "blueGreen" in strategy else "canary"
    steps_list = _mapping(strategy.get("canary")).get("steps")
    steps = len(steps_list) if isinstance(steps_list, list) else None
    index = status.get("currentStepIndex")
    step = None
    if isinstance(index, int) and not isinstance(index, bool) and steps:
        step = min(index + 1, steps)
    pauses = status.get("pauseConditions")
    paused = bool(pauses) or spec.get("paused") is True or status.get("phase") == "Paused"
    return RolloutStatus(
        strategy=name,
        step=step,
        steps=steps,
        paused=paused,
        aborted=status.get("abort") is True,
        phase=str(status.get("phase") or ""),
        message=str(status.get("message") or "")[:300],
    )


def describe(status: RolloutStatus) -> str:
    """ "canary 2/5, paused", "blue-green, paused", "canary 5/5, Healthy", "canary, aborted"."""
    where = status.strategy
    if status.step is not None and status.steps:
        where += f" {status.step}/{status.steps}"
    if status.aborted:
        return f"{where}, aborted"
    if status.paused:
        return f"{where}, paused"
    return f"{where}, {status.phase.lower()}" if status.phase else where


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class RolloutRefresh:
    """Read a Rollout's live manifest through Argo CD and show where it stands."""

    KIND: ClassVar[str] = "argocd.rollout_refresh"
    deployment_id: int
    rollout: RolloutRef

    @property
    def key(self) -> str:
        return f"rollout:{self.deployment_id}"

    def to_payload(self) -> dict[str, Any]:
        return {"deployment_id": self.deployment_id, "rollout": self.rollout.to_payload()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RolloutRefresh:
        return cls(int(payload["deployment_id"]), RolloutRef.from_payload(payload["rollout"]))


@dataclass(frozen=True)
class RolloutAction:
    """Run an Argo CD resource action (`resume`, `promote-full`, `abort`) on a Rollout,
    asked by `actor`."""

    KIND: ClassVar[str] = "argocd.rollout_action"
    deployment_id: int
    rollout: RolloutRef
    action: str
    actor: str

    @property
    def key(self) -> str:
        return f"rollout:{self.deployment_id}"

    def to_payload(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "rollout": self.rollout.to_payload(),
            "action": self.action,
            "actor": self.actor,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RolloutAction:
        return cls(
            int(payload["deployment_id"]),
            RolloutRef.from_payload(payload["rollout"]),
            str(payload["action"]),
            str(payload["actor"]),
        )
