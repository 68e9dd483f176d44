"""The declarative description of a service.

A `Service` says what a service is: its package and image, the config files it reads (rendered from a
`Context`), its database, the steps that bootstrap it, the command that runs it, how to tell it is ready,
what it depends on and how it is registered in Keystone. Targets (`targets/local.py` for `teapot up`,
and the Kubernetes target) read the same descriptions; a service is never written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Context(Protocol):
    """What a target knows and a description needs: where things are, and the generated secrets."""

    bind_host: str

    def port(self, service: str) -> int: ...

    def url(self, service: str) -> str:
        """The base URL other services use to reach `service`."""

    def config_path(self, service: str, name: str) -> str:
        """Where `service` finds its config file `name`."""

    def data_path(self, service: str, name: str) -> str:
        """A directory or file of `service`'s own persistent data."""

    def public_url(self, service: str) -> str:
        """The URL users reach `service` at (the catalog's public endpoint)."""

    def database_url(self, service: str) -> str: ...

    def messaging_url(self, service: str) -> str:
        """oslo.messaging transport_url for `service` (RabbitMQ)."""

    def cache_servers(self) -> str | None:
        """memcached servers ("host:port,...") or None when there is no shared cache."""

    def secret(self, name: str) -> str:
        """A generated secret, created on first use and stable afterwards."""

    @property
    def settings(self) -> Mapping[str, object]:
        """Target-wide settings (e.g. `hosts` for the emulated hosts of a box, `profile`)."""


Render = Callable[[Context], str]
Argv = Callable[[Context], Sequence[str]]
Env = Callable[[Context], Mapping[str, str]]


def _no_env(ctx: Context) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class ConfigFile:
    name: str
    render: Render
    secret: bool = False  # holds credentials: 0600 locally, a Secret on Kubernetes


@dataclass(frozen=True)
class Step:
    """A bootstrap step. `once` steps run on first start only; the others on every start.

    A step prepares the service's own files and database; it never needs another service running.
    `after` names the steps it needs done first: by default the one before it, so steps run in the
    order written; `after=()` lets a step run alongside the others where the target can."""

    name: str
    argv: Argv
    env: Env = _no_env
    once: bool = False
    after: tuple[str, ...] | None = None


def step_waves(steps: Sequence[Step]) -> list[list[Step]]:
    """The steps in waves: each wave needs only the steps of the waves before it."""
    needs = {}
    for i, step in enumerate(steps):
        needs[step.name] = set(step.after if step.after is not None else
                               ((steps[i - 1].name,) if i else ()))
        unknown = needs[step.name] - {s.name for s in steps[:i]}
        if unknown:
            raise ValueError(f"step {step.name!r} comes after {sorted(unknown)}, which are not earlier steps")
    waves: list[list[Step]] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        wave = [s for s in pending if needs[s.name] <= done]
        waves.append(wave)
        done |= {s.name for s in wave}
        pending = [s for s in pending if s.name not in done]
    return waves


@dataclass(frozen=True)
class Readiness:
    path: str  # HTTP GET on the service's URL + path
    ok_status: tuple[int, ...] = (200, 300)


@dataclass(frozen=True)
class KeystoneRegistration:
    """A catalog entry and a service user (in project `service`, with the `service` role)."""

    service_type: str
    service_name: str
    url_path: str = ""
    user: str | None = None
    password_secret: str | None = None
    roles: tuple[str, ...] = ("service",)
    also_types: tuple[tuple[str, str], ...] = ()  # further (type, name) entries at the same URL


@dataclass(frozen=True)
class Workload:
    """How a service runs on Kubernetes (the local target ignores it)."""

    kind: str = "Deployment"  # Deployment, StatefulSet or DaemonSet
    nodes: str = "control-plane"  # control-plane or compute: the node selector
    privileged: bool = False
    host_network: bool = False
    host_paths: tuple[str, ...] = ()  # host directories mounted at the same path
    storage: str | None = None  # StatefulSet: size of the persistent volume at data_dir
    data_dir: str | None = None
    scalable: bool = True  # several replicas may run at once
    cpu: str = "100m"  # requests
    memory: str = "256Mi"


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    package: str  # PyPI requirement for local installs
    image: str  # container image name (without registry and tag) for Kubernetes
    command: Argv
    env: Env = _no_env
    port: int | None = None
    config_files: tuple[ConfigFile, ...] = ()
    database: str | None = None
    bootstrap: tuple[Step, ...] = ()
    readiness: Readiness | None = None
    depends_on: tuple[str, ...] = ()
    keystone: KeystoneRegistration | None = None
    config_dir: str = ""  # services that share config files name the same directory
    settings_key: str = ""  # key under `services:` in teapot.yaml; defaults to config_dir or name
    workload: Workload = field(default_factory=Workload)
    ingress: str | None = None  # public host name (first label), e.g. "identity"
    messaging: bool = False  # needs RabbitMQ
    cache: bool = False  # uses memcached
    extra: Mapping[str, object] = field(default_factory=dict)


def config_dir(service: Service) -> str:
    return service.config_dir or service.name


def settings_key(service: Service) -> str:
    return service.settings_key or service.config_dir or service.name


def levels(services: Sequence[Service]) -> list[list[Service]]:
    """Services grouped so that each group depends only on earlier groups: a group starts at once."""
    depth: dict[str, int] = {}
    for service in order(services):
        depth[service.name] = 1 + max((depth[d] for d in service.depends_on), default=-1)
    grouped: list[list[Service]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for service in order(services):
        grouped[depth[service.name]].append(service)
    return grouped


def order(services: Sequence[Service]) -> list[Service]:
    """Services in dependency order; a missing or circular dependency is an error naming it."""
    by_name = {s.name: s for s in services}
    done: dict[str, Service] = {}
    visiting: set[str] = set()

    def visit(service: Service) -> None:
        if service.name in done:
            return
        if service.name in visiting:
            raise ValueError(f"services depend on each other in a circle at {service.name!r}")
        visiting.add(service.name)
        for dep in service.depends_on:
            if dep not in by_name:
                raise ValueError(f"service {service.name!r} depends on {dep!r}, which is not enabled")
            visit(by_name[dep])
        visiting.discard(service.name)
        done[service.name] = service

    for service in services:
        visit(service)
    return list(done.values())
