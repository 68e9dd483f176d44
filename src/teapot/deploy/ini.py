"""oslo-style INI files, generated from nested dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_value(v) for v in value)
    return str(value)


def render(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Render sections to INI text; DEFAULT first, keys in the order given, None values left out."""
    names = sorted(sections, key=lambda name: name != "DEFAULT")
    out: list[str] = []
    for name in names:
        options = {k: v for k, v in sections[name].items() if v is not None}
        if not options:
            continue
        out.append(f"[{name}]")
        out.extend(f"{key} = {_value(value)}" for key, value in options.items())
        out.append("")
    return "\n".join(out)
