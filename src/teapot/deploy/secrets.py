"""Generated secrets: created on first use, kept in one 0600 file, never given a default."""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import threading
from pathlib import Path

import yaml


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600."""
    write_atomic(path, text, 0o600)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a part. The
    directory made for an owner-only file is owner-only too."""
    path.parent.mkdir(mode=0o777 if mode & 0o077 else 0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def private_dir(path: Path) -> int:
    """Make `path` a directory only its owner can enter, and everything in it owner-only; returns
    how many files and directories had to be tightened (symbolic links are left alone)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened = 0
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs),
                     *(os.path.join(root, f) for f in files)]:
            try:
                st = os.lstat(name)
            except FileNotFoundError:  # a service removed it meanwhile
                continue
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            os.chmod(name, stat.S_IMODE(st.st_mode) & ~0o077)
            tightened += 1
    return tightened


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
