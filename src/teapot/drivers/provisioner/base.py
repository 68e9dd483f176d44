"""The provisioner interface: what the host state machine asks of the hardware side.

Every operation is idempotent and level-triggered: called again and again, it looks at the machine,
does the next thing, and reports an `Outcome` (done, error, or under way) until the goal is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from teapot.resources.host import Outcome


@dataclass(frozen=True)
class HostTarget:
    name: str
    uuid: str
    spec: dict
    node_id: str  # status.provisioning.ID; "" before registration
    username: str
    password: str
    user_data: str | None
    issued: str | None  # the action this provisioner last started for the host, if it has not ended
    traits: tuple[str, ...] = ()  # hardware traits, sorted; the node carries them for Placement
    network_data: dict | None = None  # OpenStack network_data.json for the host's config drive

    def __repr__(self) -> str:  # never show credentials or user data in logs or tracebacks
        return f"HostTarget(name={self.name!r}, node_id={self.node_id!r})"


class Provisioner(Protocol):
    def refresh(self) -> None:
        """Take one look at every host the provisioner knows, shared by the next operations."""

    def register(self, host: HostTarget, bmc_version: int) -> Outcome: ...

    def inspect(self, host: HostTarget, disabled: bool) -> Outcome: ...

    def prepare(self, host: HostTarget, automated_clean: bool) -> Outcome: ...

    def provision(self, host: HostTarget, image: dict) -> Outcome: ...

    def deprovision(self, host: HostTarget, automated_clean: bool) -> Outcome: ...

    def power(self, host: HostTarget, on: bool) -> Outcome: ...

    def delete(self, host: HostTarget) -> Outcome: ...
