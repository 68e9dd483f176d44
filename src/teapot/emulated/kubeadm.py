"""`kubeadm` on the box's emulated hosts: the real kubeadm of the release the host's cluster runs,
with its preflight phase skipped (it looks for a container runtime and systemd, which an emulated
host does not have; the stand-in kubelet takes their place).

Teapot's images carry the kubeadm of one Kubernetes release; the box's hosts carry every release
built here, so this picks the one the host was provisioned for (the file Teapot's user data
writes), else the one the configuration asks for: `kubernetesVersion` for `init`, and for `join`
the version the cluster's API server reports (`/version`, readable without
credentials; the join itself still checks the server against the CA hash).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path

import yaml

WAIT = 600.0
RELEASE_PATH = "/etc/kubernetes/teapot/kubernetes-version"  # written by Teapot's user data


def releases() -> dict[str, Path]:
    out = {}
    for entry in os.environ.get("TEAPOT_RELEASES", "").split(":"):
        tag, _, path = entry.partition("=")
        if tag and path:
            out[tag] = Path(path)
    return out


def _config(argv: list[str]) -> list[dict]:
    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else \
            arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if path:
            return [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
    return []


def server_version(endpoint: str) -> str:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # only to pick a release; kubeadm verifies the CA
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with urllib.request.urlopen(f"https://{endpoint}/version", context=insecure,
                                        timeout=5) as r:
                return json.loads(r.read())["gitVersion"]
        except (OSError, ValueError, KeyError) as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"kubeadm: the API server at {endpoint} did not answer: {e}") from None
            time.sleep(2)


def wanted_version(docs: list[dict]) -> str | None:
    for doc in docs:
        if doc.get("kind") == "ClusterConfiguration" and doc.get("kubernetesVersion"):
            return doc["kubernetesVersion"]
    for doc in docs:
        if doc.get("kind") == "JoinConfiguration":
            endpoint = ((doc.get("discovery") or {}).get("bootstrapToken") or {}) \
                .get("apiServerEndpoint")
            if endpoint:
                return server_version(endpoint)
    return None


def provisioned_release() -> str | None:
    """The release Teapot provisioned the host for (a real host's image carries only that one)."""
    try:
        return Path(RELEASE_PATH).read_text().strip() or None
    except OSError:
        return None


def main(argv: list[str]) -> None:
    carried = releases()
    if not carried:
        raise SystemExit("kubeadm: this host's image carries no Kubernetes release")
    version = (provisioned_release() or wanted_version(_config(argv))) \
        if argv[:1] in (["init"], ["join"]) else None
    tag = version if version in carried else sorted(carried)[-1]
    if version and version not in carried:
        raise SystemExit(f"kubeadm: this host's image carries Kubernetes "
                         f"{', '.join(sorted(carried))}, not {version}")
    args = list(argv)
    if argv[:1] in (["init"], ["join"]):
        args.append("--skip-phases=preflight")
    program = carried[tag] / "kubeadm"
    os.execv(program, [str(program), *args])


if __name__ == "__main__":
    main(sys.argv[1:])
