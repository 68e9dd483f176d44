"""Plan: what apply would create, update (and which fields) and delete, against the live cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teapot.deploy.targets.kubernetes import COMPONENT


@dataclass
class Change:
    action: str  # create | update | delete
    kind: str
    name: str
    fields: list[str] = field(default_factory=list)
    obj: dict | None = None

    def line(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.action:6} {self.kind}/{self.name}{detail}"


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def changed_fields(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where `desired` differs from `live`, looking only at what `desired` sets."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out = []
        for key, value in desired.items():
            out += changed_fields(value, live.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        out = []
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            out += changed_fields(d, lv, f"{path}[{i}]")
        return out
    return [] if desired == live else [path]


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def plan(desired: list[dict], live: list[dict], keep_previous_config: bool = True) -> list[Change]:
    """Changes that take `live` (the objects this deployment owns) to `desired`, in apply order.

    Config objects (ConfigMaps and Secrets named by their content hash) of the generation before
    are kept: they are what a rollback points at. Older ones are deleted.
    """
    live_by_key = {_key(o): o for o in live}
    changes = []
    for obj in desired:
        current = live_by_key.get(_key(obj))
        if current is None:
            changes.append(Change("create", obj["kind"], obj["metadata"]["name"], obj=obj))
            continue
        fields = [f for f in changed_fields(_normal(obj), _normal(current))
                  if not f.startswith(("apiVersion", "metadata.namespace"))]
        if fields:
            changes.append(Change("update", obj["kind"], obj["metadata"]["name"], fields, obj))
    wanted = {_key(o) for o in desired}
    leftovers = [o for o in live if _key(o) not in wanted]
    kept = _previous_config(desired, leftovers) if keep_previous_config else set()
    for obj in leftovers:
        if _key(obj) not in kept:
            changes.append(Change("delete", obj["kind"], obj["metadata"]["name"], obj=obj))
    return changes


def _previous_config(desired: list[dict], leftovers: list[dict]) -> set[tuple[str, str]]:
    """The newest leftover config object per config family (name without its hash)."""
    families = {_family(o) for o in desired if _is_config(o)}
    newest: dict[tuple, dict] = {}
    for obj in leftovers:
        if not _is_config(obj) or _family(obj) not in families:
            continue
        stamp = obj["metadata"].get("creationTimestamp") or ""
        best = newest.get(_family(obj))
        if best is None or str(stamp) > str(best["metadata"].get("creationTimestamp") or ""):
            newest[_family(obj)] = obj
    return {_key(o) for o in newest.values()}


def _is_config(obj: dict) -> bool:
    return (obj["kind"] in ("ConfigMap", "Secret")
            and (obj["metadata"].get("labels") or {}).get(COMPONENT) == "config")


def _family(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"].rsplit("-", 1)[0]
