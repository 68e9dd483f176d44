"""Generated secrets: created on first use, kept in one 0600 file, never given a default."""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from pathlib import Path

import yaml


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600."""
    write_atomic(path, text, 0o600)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
