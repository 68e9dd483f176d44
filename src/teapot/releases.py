"""The Kubernetes releases Teapot serves, pinned, and where their programs are built.

`make install` builds each release's kube-apiserver, kube-controller-manager, kube-scheduler,
kubeadm and kubectl, and one etcd, from the Go module proxy (`tools/build-kubernetes`) into a cache
outside the checkout, one folder per version, so a fresh clone reuses them. The same versions are
what the API accepts as `kube_tag` (unless `[clusters] kubernetes_versions` says otherwise) and what
the box's emulated hosts carry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Two adjacent minor releases: clusters upgrade from the first to the second.
KUBERNETES = ("v1.36.3", "v1.37.2")
ETCD = "v3.6.8"  # the etcd release Kubernetes 1.36 and 1.37 are built against
PROGRAMS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeadm", "kubectl")
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build-kubernetes"


def cache_dir() -> Path:
    base = os.environ.get("KUBE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "teapot" / "kubernetes"


def bin_dir(version: str) -> Path:
    return cache_dir() / version / "bin"


def etcd_bin_dir() -> Path:
    return cache_dir() / f"etcd-{ETCD}" / "bin"


def built() -> list[str]:
    """The pinned releases whose programs are all built here."""
    return [v for v in KUBERNETES if (cache_dir() / v / ".complete").exists()
            and (cache_dir() / f"etcd-{ETCD}" / ".complete").exists()]


def minor(version: str) -> tuple[int, int]:
    """"v1.36.3" → (1, 36); ValueError for anything else."""
    parts = version.removeprefix("v").split(".")
    if not version.startswith("v") or len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{version!r} is not a Kubernetes release such as {KUBERNETES[-1]}")
    return int(parts[0]), int(parts[1])


def build(versions: tuple[str, ...] = KUBERNETES) -> int:
    """Build what is missing (a no-op when everything is there)."""
    return subprocess.call([str(BUILD_SCRIPT), "--etcd", ETCD, *versions])


if __name__ == "__main__":
    sys.exit(build())
