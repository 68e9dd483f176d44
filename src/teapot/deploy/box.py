"""Teapot in a box: every service on this machine, emulated hosts enrolled, one `ready:` line.

`run()` brings the box up in dependency order, writes `clouds.yaml`, enrolls the emulated hosts,
waits until they are available, then supervises until SIGINT/SIGTERM, when it stops every child.
A service that cannot start ends the box; once the box is ready, one that keeps exiting is backed
off while the others keep serving (see `supervisor`).
Everything lives in the state directory, readable by its owner only (it holds passwords, and
Ironic's database every BMC's credentials); a second run with the same directory resumes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import yaml

from teapot.deploy import keystone_setup, storage_setup
from teapot.deploy.secrets import SecretStore, private_dir, write_private
from teapot.deploy.service import levels
from teapot.deploy.services import box as box_services
from teapot.deploy.services import sushy_emulator
from teapot.deploy.services.teapot import SWITCHES_FILE
from teapot.deploy.supervisor import STATUS_FILE, Backoff, Supervisor
from teapot.deploy.targets.local import (
    UMASK,
    DeployError,
    LocalContext,
    LocalTarget,
    log_tail,
    open_log,
)
from teapot.drivers.loadbalancer.box import BoxLoadBalancers
from teapot.net import fabric as fabric_mod
from teapot.net import public as public_mod
from teapot.net.fabric import Fabric, FabricError
from teapot.net.public import PublicNetwork, PublicNetworkError

DEFAULT_PORTS = {"keystone": 5000, "ironic": 6385, "sushy-emulator": 8000, "teapot-api": 9511,
                 "teapot-conductor": 9512}
# With Neutron (`teapot up --with-neutron`): its API and the MariaDB its migrations need (not on
# 3306, where the machine's own MariaDB may listen).
NEUTRON_PORTS = {"mariadb": 13306, "neutron-server": 9696}
# With Octavia (`teapot up --with-octavia`): its API (and MariaDB, as above).
OCTAVIA_PORTS = {"octavia-api": 9876}
# With storage (`teapot up --storage`): RabbitMQ (and Erlang's port mapper), Ceph, RADOS Gateway,
# Manila, Cinder and Barbican. The Ceph daemons other than the monitor take CEPH_DAEMON_PORT_COUNT
# ports from "ceph-daemons" on, which comes last.
STORAGE_PORTS = {"epmd": 14369, "rabbitmq": 15672, "rabbitmq-dist": 15673, "ceph-mon": 13300,
                 "rgw": 7480, "manila-api": 8786, "cinder-api": 8776, "barbican-api": 9311,
                 "ceph-daemons": 13310}
STORAGE_DATABASES = ["manila", "cinder"]  # in the box's MariaDB
EMULATED_CLASS = "baremetal"  # the host class (flavor) of a box's hosts
CLOUDS = {"teapot-admin": ("admin", "admin", "admin-password"),
          "teapot-demo": ("demo", "demo", "demo-password")}


class Box:
    def __init__(self, state_dir: Path, hosts: int | None = None, port_base: int | None = None,
                 say=print, switch: bool = True, neutron: bool | None = None,
                 storage: bool | None = None, octavia: bool | None = None):
        self.state_dir = state_dir.resolve()
        self.switch = switch
        self.say = say
        tightened = private_dir(self.state_dir)
        if tightened:
            say(f"made {tightened} files and directories in {self.state_dir} readable by their "
                "owner only (the state directory holds passwords)")
        settings_file = self.state_dir / "box.yaml"
        saved = yaml.safe_load(settings_file.read_text()) if settings_file.exists() else {}
        # a state directory from before a service had a port gets its default port
        ports = {**DEFAULT_PORTS, **NEUTRON_PORTS, **OCTAVIA_PORTS, **STORAGE_PORTS,
                 **(saved.get("ports") or {})}
        if port_base is not None:
            ports = {name: port_base + i
                     for i, name in enumerate({**DEFAULT_PORTS, **NEUTRON_PORTS, **OCTAVIA_PORTS,
                                               **STORAGE_PORTS})}
        self.hosts = hosts if hosts is not None else int(saved.get("hosts", 4))
        if self.hosts < 0:
            raise DeployError("--hosts must be 0 or more")
        self.octavia = octavia if octavia is not None else bool(saved.get("octavia", False))
        if self.octavia and (not switch or neutron is False):
            raise DeployError("--with-octavia needs the switch and Neutron: Teapot's load "
                              "balancers are on tenant networks, which Octavia's clients find in "
                              "Neutron (run without --no-switch and --without-neutron, or "
                              "--without-octavia)")
        # Octavia's clients look the VIP network up in Neutron: Octavia brings Neutron along.
        self.neutron = (neutron if neutron is not None else
                        self.octavia or bool(saved.get("neutron", False)))
        self.storage = storage if storage is not None else bool(saved.get("storage", False))
        self.had_storage = bool(saved.get("storage", False))  # its catalog entries to remove
        # The switch keeps its prefix (and so its MAC address and port names) across runs: hosts'
        # networkInterfaces name them.
        self.switch_prefix = saved.get("switch_prefix") or "tp" + secrets.token_hex(3)
        write_private(settings_file, yaml.safe_dump({"hosts": self.hosts, "ports": ports,
                                                     "switch_prefix": self.switch_prefix,
                                                     "neutron": self.neutron,
                                                     "octavia": self.octavia,
                                                     "storage": self.storage}))
        self.ctx = LocalContext(self.state_dir, ports, SecretStore(self.state_dir / "secrets.yaml"),
                                settings={"profile": "box", "hosts": self.hosts, "switch": switch,
                                          "state_dir": str(self.state_dir),
                                          "storage": self.storage,
                                          "public_cidr": saved.get("public_cidr"),
                                          "mariadb": (["neutron"] if self.neutron else [])
                                          + (["octavia"] if self.octavia else [])
                                          + (STORAGE_DATABASES if self.storage else [])})
        self.target = LocalTarget(self.ctx)
        self.stop_requested = threading.Event()
        self.supervisor: Supervisor | None = None
        self.fabric: Fabric | None = None
        self.public: PublicNetwork | None = None
        self._fabric_started: Future | None = None

    # -- pieces ------------------------------------------------------------------------------------
    @property
    def clouds_file(self) -> Path:
        return self.state_dir / "clouds.yaml"

    def write_clouds(self) -> None:
        auth_url = self.ctx.url("keystone") + "/v3"
        clouds = {
            cloud: {
                "auth": {"auth_url": auth_url, "username": user, "password": self.ctx.secret(secret),
                         "project_name": project, "user_domain_name": "Default",
                         "project_domain_name": "Default"},
                "region_name": "RegionOne", "identity_api_version": 3, "interface": "public",
            }
            for cloud, (user, project, secret) in CLOUDS.items()
        }
        write_private(self.clouds_file, yaml.safe_dump({"clouds": clouds}, sort_keys=False))

    def setup_identities(self, services) -> None:
        """Users, projects and catalog entries; skipped when nothing changed since last time."""
        wanted = json.dumps([[s.name, s.keystone.__dict__ if s.keystone else None,
                              s.port and self.ctx.url(s.name)] for s in services], sort_keys=True)
        digest = hashlib.sha256(wanted.encode()).hexdigest()
        marker = Path(self.ctx.data_path("keystone", ".identities"))
        if marker.exists() and marker.read_text() == digest:
            return
        conn = keystone_setup.admin_connection(self.ctx.url("keystone") + "/v3",
                                               self.ctx.secret("admin-password"))
        keystone_setup.ensure_user(conn, "demo", self.ctx.secret("demo-password"), "demo", ["member"])
        for service in services:
            if service.keystone:
                keystone_setup.register(conn, service.keystone,
                                        self.ctx.url(service.name) + service.keystone.url_path,
                                        self.ctx.secret)
        if not self.neutron:  # a former run's Neutron leaves the catalog with it
            keystone_setup.unregister(conn, "network", self.ctx.url("neutron-server"))
        if not self.octavia:  # and a former run's Octavia
            keystone_setup.unregister(conn, "load-balancer", self.ctx.url("octavia-api"))
        if self.storage:
            storage_setup.register_s3(conn, self.ctx.url("rgw"))
        elif self.had_storage:  # a former run's storage services leave the catalog with it
            storage_setup.unregister_all(conn, self.ctx.url)
        marker.write_text(digest)

    def _identities(self, services) -> None:
        self.setup_identities(services)
        self.write_clouds()

    def setup_storage(self) -> None:
        """Manila's share type, Cinder's encrypted volume type; then wait until Manila and Cinder
        have their Ceph back-ends."""
        from teapot.deploy.services import cinder, manila

        conn = keystone_setup.admin_connection(self.ctx.url("keystone") + "/v3",
                                               self.ctx.secret("admin-password"))
        try:
            storage_setup.ensure_share_type(conn, self.ctx.url("manila-api"), manila.SHARE_TYPE,
                                            "CEPHFS")
            storage_setup.ensure_encrypted_volume_type(
                conn, self.ctx.url("cinder-api"), cinder.ENCRYPTED_TYPE, cinder.RBD_BACKEND,
                cinder.ENCRYPTION)
            storage_setup.wait_backends(conn, self.ctx.url("manila-api"),
                                        self.ctx.url("cinder-api"),
                                        stop=self.stop_requested.is_set,
                                        check=self._check_children)
        except storage_setup.StorageError as e:
            raise DeployError(f"storage: {e}") from None

    # -- the switch -------------------------------------------------------------------------------
    @property
    def switches_file(self) -> Path:
        return Path(self.ctx.config_path("teapot", SWITCHES_FILE))

    def check_switch(self) -> None:
        """Fail before anything starts when the switch cannot run here."""
        missing = []
        if not fabric_mod.OVS_SCHEMA.exists() or not shutil.which("ovs-vswitchd"):
            missing.append("Open vSwitch (Debian package openvswitch-switch)")
        if not Path(fabric_mod.SSHD).exists():
            missing.append("sshd (Debian package openssh-server)")
        if not shutil.which("ip"):
            missing.append("ip (Debian package iproute2)")
        if not shutil.which("ethtool"):
            missing.append("ethtool (Debian package ethtool)")
        if not shutil.which("haproxy"):
            missing.append("HAProxy (Debian package haproxy), which runs clusters' endpoints")
        if missing:
            raise DeployError(f"the box's switch needs {' and '.join(missing)}, not installed here; "
                              "install it (make install does) or run without a switch: "
                              "teapot up --no-switch")

    def start_fabric(self) -> Fabric:
        """The top-of-rack switch: one port per emulated host (on the idle VLAN) and the trunk;
        then switches.yaml, which the conductor reads when it starts. A switch that a killed run
        left behind is stopped first."""
        try:
            if (self.state_dir / "fabric" / fabric_mod.STATE_FILE).exists():
                self.say("stopping the switch a former run left behind")
                Fabric.load(self.state_dir).stop()
            fabric = self.fabric = Fabric(self.state_dir, prefix=self.switch_prefix)
            fabric.start()
            if self.hosts:
                emulated = sushy_emulator.emulated_hosts(self.hosts)
                fabric.add_hosts([h["name"] for h in emulated], {h["name"]: h["mac"] for h in emulated})
            fabric.add_trunk()
            self.public = PublicNetwork(self.state_dir, self.switch_prefix,
                                        self.ctx.settings["public_cidr"]).start()
        except (FabricError, PublicNetworkError, ValueError, KeyError, TypeError) as e:
            raise DeployError(f"switch: {e}") from None
        switches = [{"name": fabric.name, "macAddress": fabric.mac,
                     "device": fabric.device_config()}]
        write_private(self.switches_file, yaml.safe_dump(switches, sort_keys=False))
        self.say(f"switch {fabric.name} running in namespace {fabric.switch_namespace}: "
                 f"{len(fabric.hosts)} hosts cabled, on the idle VLAN {fabric.vlans.idle}; "
                 f"public network {self.public.cidr} (the outside world: namespace "
                 f"{self.public.namespace})")
        return fabric

    def choose_public(self) -> None:
        """The public network's range: the one this state directory used, or the first private
        range that no route of this machine overlaps (what a former run left is removed first,
        load balancers included)."""
        self._stop_public()
        try:
            cidr = public_mod.choose_cidr(self.ctx.settings.get("public_cidr"))
        except PublicNetworkError as e:
            raise DeployError(f"public network: {e}") from None
        self.ctx.settings["public_cidr"] = cidr
        settings_file = self.state_dir / "box.yaml"
        saved = yaml.safe_load(settings_file.read_text())
        write_private(settings_file, yaml.safe_dump({**saved, "public_cidr": cidr}))

    def _stop_public(self) -> None:
        BoxLoadBalancers(self.state_dir).remove_all()
        if (self.state_dir / "public" / public_mod.STATE_FILE).exists():
            PublicNetwork.load(self.state_dir).stop()
        self.public = None

    def _wait_fabric(self) -> Fabric | None:
        return self._fabric_started.result() if self._fabric_started else None

    def stop_fabric(self) -> None:
        if self._fabric_started is not None:
            try:
                self._fabric_started.result()  # never stop a switch while it starts
            except Exception:  # noqa: BLE001 - reported by start(); whatever it left is stopped
                pass
        self._stop_public()
        if self.fabric is not None:
            self.fabric.stop()
            self.fabric = None

    def _network_interfaces(self, fabric: Fabric | None, host: dict) -> list[dict] | None:
        """Where the host's NIC is cabled, as a BareMetalHost's networkInterfaces say it."""
        if fabric is None:
            return None
        link = fabric.local_link_connection(host["name"])
        return [{"macAddress": host["mac"],
                 "switchPort": {"switchID": link["switch_id"], "portID": link["port_id"]}}]

    def _recable(self, api, host: dict, interfaces: list[dict] | None) -> None:
        """Give a host enrolled earlier the networkInterfaces of this run's switch."""
        from teapot.cli.client import TeapotError

        if interfaces is None or host["spec"].get("networkInterfaces") == interfaces:
            return
        if host.get("consumer"):
            self.say(f"host {host['name']} keeps its networkInterfaces while cluster "
                     f"{host['consumer']['uuid']} holds it")
            return
        try:
            api.update_host(host["uuid"], {"spec": {"networkInterfaces": interfaces}})
        except TeapotError as e:
            self.say(f"host {host['name']}: its networkInterfaces could not be set: {e}")

    def _api(self):
        from teapot.cli.client import TeapotClient

        return TeapotClient.from_cloud("teapot-admin", str(self.clouds_file))

    def enroll(self) -> list[str]:
        api = self._api()
        existing = {h["name"]: h for h in api.list_hosts()}
        fabric = self._wait_fabric()
        names = []
        bmc = self.ctx.url("sushy-emulator").replace("http://", "redfish+http://")
        for host in sushy_emulator.emulated_hosts(self.hosts):
            names.append(host["name"])
            interfaces = self._network_interfaces(fabric, host)
            if host["name"] in existing:
                self._recable(api, existing[host["name"]], interfaces)
                continue
            api.create_host({
                "name": host["name"],
                # An emulated host's address is the one Teapot hands it on its tenant network.
                "labels": {"teapot.openstack.org/emulated": "true"},
                "spec": {
                    "online": False,
                    "bootMACAddress": host["mac"],
                    "bmc": {"address": f"{bmc}/redfish/v1/Systems/{host['uuid']}",
                            "credentialsName": f"{host['name']}-bmc-secret"},
                    "automatedCleaningMode": "metadata",
                    **({"networkInterfaces": interfaces} if interfaces else {}),
                },
                "bmcCredentials": {"username": sushy_emulator.BMC_USERNAME,
                                   "password": self.ctx.secret("bmc-password")},
            })
        if not any(c["name"] == EMULATED_CLASS for c in api.list_hostclasses()):
            api.create_hostclass({"name": EMULATED_CLASS, "labels": {"teapot.openstack.org/emulated": "true"},
                                  "description": "Emulated hosts of this box"})
        return names

    def wait_available(self, names: list[str], timeout: float = 600.0) -> None:
        api = self._api()
        deadline = time.monotonic() + timeout
        reported: set[str] = set()
        while not self.stop_requested.is_set():
            hosts = {h["name"]: h for h in api.list_hosts() if h["name"] in names}
            settled = [n for n, h in hosts.items() if h["state"] in ("available", "provisioned")]
            for name, h in hosts.items():
                message = h["status"].get("errorMessage")
                if message and name not in reported:
                    self.say(f"host {name}: {h['status'].get('errorType', 'error')}: {message} (retrying)")
                    reported.add(name)
            if len(settled) == len(names):
                return
            self._check_children()
            if time.monotonic() > deadline:
                raise DeployError(f"hosts not available after {timeout:.0f} s: "
                                  f"{sorted(set(names) - set(settled))}")
            time.sleep(0.25)

    def _check_children(self) -> None:
        for running, code in self.target.exited():
            raise DeployError(f"{running.service.name} exited with code {code}; last lines of "
                              f"{running.log}:\n{log_tail(running.log)}")

    # -- the whole ---------------------------------------------------------------------------------
    def start(self) -> tuple[float, float]:
        """Bring everything up, independent services at once; returns the seconds taken by the
        services and by the hosts (enrolled until available)."""
        started = time.monotonic()
        (self.state_dir / STATUS_FILE).unlink(missing_ok=True)  # a former run's
        services = box_services(neutron=self.neutron, storage=self.storage, switch=self.switch,
                                octavia=self.octavia)
        if self.switch:
            # The switch starts beside everything else; the conductor and enrollment wait for it.
            self.check_switch()
            self.choose_public()
            switch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switch")
            self._fabric_started = switch.submit(self.start_fabric)
            switch.shutdown(wait=False)
        # Config files and bootstrap steps need no other service: all of them at once, then the
        # services start in dependency order.
        self.say("preparing " + ", ".join(s.name for s in services))
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            for future in [pool.submit(self.target.prepare, s) for s in services]:
                future.result()
        # Users and catalog entries are made while later services start, and hosts are enrolled
        # as soon as the API answers: the conductor takes them up when it starts.
        with ThreadPoolExecutor(max_workers=1) as background:
            identities = enrolled = None
            for level in levels(services):
                if "teapot-conductor" in {s.name for s in level}:
                    self._wait_fabric()  # the conductor reads switches.yaml when it starts
                for service in level:
                    where = f" on {self.ctx.bind_host}:{self.ctx.port(service.name)}" if service.port else ""
                    self.say(f"starting {service.name}{where}")
                with ThreadPoolExecutor(max_workers=len(level)) as pool:
                    for future in [pool.submit(self.target.launch, s) for s in level]:
                        future.result()
                started_now = {s.name for s in level}
                if "keystone" in started_now:
                    identities = background.submit(self._identities, services)
                if "teapot-api" in started_now:
                    enrolled = background.submit(self.enroll)  # after the identities: one worker
            if identities is None or enrolled is None:
                raise DeployError("the box has no keystone or no teapot-api")
            if self.storage:
                identities.result()
                self.setup_storage()
            services_done = time.monotonic()
            names = enrolled.result()
        self.wait_available(names)
        return services_done - started, time.monotonic() - services_done

    def supervise(self, backoff: Backoff | None = None) -> None:
        """Restart a child that exits, backing off one that keeps exiting, until a stop is
        requested; the health of every child is kept in run/status.json."""
        fabric = self._wait_fabric()
        self.supervisor = Supervisor(self.target, box_services(neutron=self.neutron,
                                                               storage=self.storage,
                                                               switch=self.switch,
                                                               octavia=self.octavia), self.say,
                                     backoff or Backoff(),
                                     daemons=[SwitchDaemon(fabric, d) for d in fabric.DAEMONS]
                                     if fabric is not None else ())
        self.supervisor.run(self.stop_requested.wait)

    def stop(self) -> None:
        self.target.stop_all()
        if self.supervisor is not None:
            self.supervisor.close()
        self.stop_fabric()


class SwitchDaemon:
    """One of the switch's daemons, for the supervisor to watch: `ovsdb-server`, `ovs-vswitchd`
    and the switch's sshd (`switch-sshd`)."""

    def __init__(self, fabric: Fabric, daemon: str):
        self.fabric, self.daemon = fabric, daemon
        self.name = "switch-sshd" if daemon == "sshd" else daemon

    def pid(self) -> int | None:
        return self.fabric.daemon_pid(self.daemon)

    def start(self) -> None:
        try:
            self.fabric.restart_daemon(self.daemon)
        except FabricError as e:
            raise DeployError(str(e)) from None

    def answers(self) -> bool:
        return self.fabric.daemon_answers(self.daemon)


def _logging_to(path: Path, say):
    """`say`, and the same lines with the time in the box's own log."""
    fd = open_log(path)

    def both(line: str) -> None:
        say(line)
        os.write(fd, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n".encode())

    return both, fd


def run(state_dir: Path, hosts: int | None, port_base: int | None, say=print,
        max_restart_delay: float = 60.0, switch: bool = True, neutron: bool | None = None,
        storage: bool | None = None, octavia: bool | None = None) -> int:
    if max_restart_delay <= 0:
        say("error: the longest wait between restarts must be more than 0 s")
        return 1
    previous_umask = os.umask(UMASK)  # what this process writes in the state directory is private
    lock_fd = None
    try:
        # One `teapot up` per state directory: what a former run left (its switch) is stopped
        # only when no other run holds the lock. The kernel releases it when this process ends.
        lock = state_dir.resolve() / "run" / "teapot-up.lock"
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"error: another teapot up is running with the state directory {state_dir}")
            os.close(lock_fd)
            os.umask(previous_umask)
            return 1
        box = Box(state_dir, hosts, port_base, say, switch=switch, neutron=neutron,
                  storage=storage, octavia=octavia)
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        os.umask(previous_umask)
        raise
    say, log_fd = _logging_to(box.state_dir / "logs" / "box.log", say)
    box.say = say
    supervising = threading.Event()

    def request_stop(signum, _frame):
        box.stop_requested.set()
        if not supervising.is_set():
            # Leaves whatever is under way; `finally` stops the children. The supervisor stops
            # within its round instead, never in the middle of starting a process.
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        services, hosts = box.start()
        say(f"ready: {box.hosts} hosts available in {services + hosts:.1f} s "
            f"(services {services:.1f} s, hosts {hosts:.1f} s); "
            f"export OS_CLIENT_CONFIG_FILE={box.clouds_file} and use --os-cloud teapot-admin or teapot-demo")
        supervising.set()
        if not box.stop_requested.is_set():
            box.supervise(Backoff(cap=max_restart_delay))
        return 0
    except DeployError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # let the children stop in peace
        say("stopping")
        box.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopped")
        os.close(log_fd)
        os.close(lock_fd)
        os.umask(previous_umask)
