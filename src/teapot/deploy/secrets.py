"""Generated secrets: created on first use, kept in one 0600 file, never given a default."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import yaml


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class SecretStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}
        if path.exists():
            self._values = yaml.safe_load(path.read_text()) or {}

    def get(self, name: str) -> str:
        with self._lock:
            if name not in self._values:
                self._values[name] = secrets.token_urlsafe(24)
                write_private(self.path, yaml.safe_dump(self._values, sort_keys=True))
            return self._values[name]
