"""`teapot-hosts`: the box's emulated hosts, booted and halted as Ironic deploys, powers and
cleans them.

Every second it reads Ironic's nodes (from Ironic's database in the box's state directory: the
config drive Ironic holds for a node is never shown by its API) and, for each host cabled to the
box's switch:

- deployed (`active`) and powered on: boot it from the config drive Ironic holds (its network data
  and user data); a kubelet that exits is started again, as systemd would;
- deployed and powered off: stop its processes, keep its disk;
- anything else (cleaning, available, ...): wipe it (no process, no address, an empty disk).

On SIGTERM it stops every host's processes and keeps their disks, so a box started again boots
them as they were.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from teapot import releases as versions
from teapot.emulated.host import EmulatedHost, Image
from teapot.net.fabric import STATE_FILE, Fabric, FabricError

LOG = logging.getLogger("teapot.hosts")


def read_nodes(database: Path) -> dict[str, dict]:
    """name → {provision_state, power_state, configdrive, image}, straight from Ironic's tables."""
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return {}
    try:
        rows = db.execute("SELECT name, provision_state, power_state, instance_info FROM nodes"
                          ).fetchall()
    except sqlite3.OperationalError as e:
        LOG.debug("Ironic's database: %s", e)
        return {}
    finally:
        db.close()
    out = {}
    for name, provision_state, power_state, instance_info in rows:
        info = json.loads(instance_info or "{}")
        out[name] = {"provision_state": provision_state, "power_state": power_state,
                     "configdrive": info.get("configdrive"), "image": info.get("image_source")}
    return out


def make_image(directory: Path) -> Image:
    """The box's host image: every release built here, and kubeadm and kubectl on the PATH."""
    built = versions.built()
    releases = {tag: versions.bin_dir(tag) for tag in built}
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    kubeadm = bin_dir / "kubeadm"
    kubeadm.write_text(f"#!/bin/sh\nexec {sys.executable} -m teapot.emulated.kubeadm \"$@\"\n")
    kubeadm.chmod(0o700)  # the state directory is its owner's only
    kubectl = bin_dir / "kubectl"
    kubectl.unlink(missing_ok=True)
    if built:
        kubectl.symlink_to(versions.bin_dir(built[-1]) / "kubectl")
    return Image(releases, versions.etcd_bin_dir(), bin_dir)


class Agent:
    def __init__(self, box_state: Path, ironic_db: Path, disks: Path, image: Image):
        self.box_state, self.ironic_db, self.disks, self.image = box_state, ironic_db, disks, image
        self.hosts: dict[str, EmulatedHost] = {}
        self.booted: dict[str, str] = {}  # host → the config drive digest it runs

    def _fabric_hosts(self) -> dict[str, str]:
        if not (self.box_state / "fabric" / STATE_FILE).exists():
            return {}
        try:
            return {name: hp.namespace for name, hp in Fabric.load(self.box_state).hosts.items()}
        except (FabricError, ValueError, KeyError):
            return {}

    def step(self) -> None:
        nodes = read_nodes(self.ironic_db)
        for name, namespace in self._fabric_hosts().items():
            host = self.hosts.get(name)
            if host is None or host.namespace != namespace:
                host = self.hosts[name] = EmulatedHost(name, namespace, self.disks / name,
                                                       self.image)
            try:
                self._converge(host, nodes.get(name))
            except Exception:  # noqa: BLE001 - one host's trouble never stops the others
                LOG.exception("host %s", name)

    def _converge(self, host: EmulatedHost, node: dict | None) -> None:
        drive = (node or {}).get("configdrive")
        deployed = node is not None and node["provision_state"] == "active"
        if deployed and isinstance(drive, dict):
            digest = hashlib.sha256(json.dumps([drive, node["image"]], sort_keys=True)
                                    .encode()).hexdigest()[:16]
            if node["power_state"] == "power off":
                if host.name in self.booted:
                    LOG.info("host %s: powered off", host.name)
                    host.power_off()
                    self.booted.pop(host.name)
                return
            if self.booted.get(host.name) != digest:
                LOG.info("host %s: booting deployment %s", host.name, digest)
                host.boot(digest, drive.get("user_data"), drive.get("network_data"))
                self.booted[host.name] = digest
            elif host.kubelet_exited() is not None:
                LOG.warning("host %s: the kubelet exited (%s); starting it again", host.name,
                            host.kubelet_exited())
                host.start_kubelet()
            return
        if host.name in self.booted or host.instance() is not None:
            LOG.info("host %s: %s; wiping it", host.name,
                     node["provision_state"] if node else "not in Ironic")
            host.wipe()
            self.booted.pop(host.name, None)

    def stop(self) -> None:
        for host in self.hosts.values():
            host.power_off()
        self.booted.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The box's emulated hosts")
    parser.add_argument("--box-state", required=True, type=Path)
    parser.add_argument("--ironic-database", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path,
                        help="where the hosts' disks and the box's host image live")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = Agent(args.box_state, args.ironic_database, args.data / "disks",
                  make_image(args.data / "image"))
    LOG.info("emulated hosts: image carries Kubernetes %s",
             ", ".join(agent.image.releases) or "nothing (make install builds it)")
    try:
        while not stop.is_set():
            agent.step()
            stop.wait(args.interval)
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
