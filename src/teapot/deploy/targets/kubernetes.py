"""The Kubernetes target: the same service descriptions as `teapot up`, rendered as Kubernetes objects.

For every service: its config files in a ConfigMap and a Secret whose names carry a hash of their
content (a change rolls the pods; the previous object is the rollback), database creation and db-sync
Jobs named by release and hash, Keystone registration Jobs, a Deployment/StatefulSet/DaemonSet with
init containers waiting for its dependencies, probes, resource requests, node selectors, and for HA a
PodDisruptionBudget and anti-affinity. Generated passwords live in one Secret and stay stable: values
already in the cluster are reused, new ones generated once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets as pysecrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from teapot.deploy.service import Service, config_dir, levels, settings_key
from teapot.deploy.targets.local import DeployError

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "teapot.openstack.org/deployment"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
NODE_LABELS = {"control-plane": "openstack-control-plane", "compute": "openstack-compute-node"}


class SecretValues:
    """Generated secrets: those in the cluster are kept, missing ones generated once per render."""

    def __init__(self, existing: Mapping[str, str] | None = None):
        self.values: dict[str, str] = dict(existing or {})
        self._used: list[set[str]] = []

    def get(self, name: str) -> str:
        if name not in self.values:
            self.values[name] = pysecrets.token_urlsafe(24)
        for used in self._used:
            used.add(name)
        return self.values[name]

    @contextlib.contextmanager
    def tracking(self) -> Iterator[set[str]]:
        used: set[str] = set()
        self._used.append(used)
        try:
            yield used
        finally:
            self._used.pop()  # tracking nests: the innermost ends first


@dataclass
class KubernetesContext:
    settings: dict
    services: Mapping[str, Service]
    values: SecretValues
    bind_host: str = "0.0.0.0"
    external: set[str] = field(default_factory=set)

    @property
    def namespace(self) -> str:
        return self.settings["namespace"]

    def port(self, service: str) -> int:
        svc = self.services.get(service)
        if svc is None or svc.port is None:
            raise DeployError(f"service {service!r} is not enabled or has no port")
        return svc.port

    def url(self, service: str) -> str:
        if service == "keystone" and self.settings["identity"]["external"]:
            return self.settings["identity"]["external"]["authUrl"].rstrip("/").removesuffix("/v3")
        return f"http://{service}.{self.namespace}.svc:{self.port(service)}"

    def public_url(self, service: str) -> str:
        if service == "keystone" and self.settings["identity"]["external"]:
            return self.url(service)
        svc = self.services.get(service)
        if svc is None or not svc.ingress:
            return self.url(service)
        scheme = "https" if self.settings["tls"]["enabled"] else "http"
        return f"{scheme}://{svc.ingress}.{self.settings['domain']}"

    def config_path(self, service: str, name: str) -> str:
        return f"/etc/{service}/{name}"

    def data_path(self, service: str, name: str) -> str:
        return f"/var/lib/{service}/{name}".rstrip("/")

    def database_url(self, database: str) -> str:
        password = self.secret(f"{database}-db-password")
        return (f"mysql+pymysql://{database}:{password}@galera.{self.namespace}.svc:3306/{database}"
                "?charset=utf8")

    def messaging_url(self, service: str) -> str:
        return f"rabbit://openstack:{self.secret('rabbitmq-password')}@rabbitmq.{self.namespace}.svc:5672/"

    def cache_servers(self) -> str | None:
        return f"memcached.{self.namespace}.svc:11211" if "memcached" in self.services else None

    def secret(self, name: str) -> str:
        return self.values.get(name)


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label: lower case letters, digits and '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(p for p in parts if p).lower()).strip("-")
    if len(name) <= limit:
        return name
    return name[: limit - 11] + "-" + _hash(name)


@dataclass
class Unit:
    """The objects of one service, applied together and in order."""

    service: str
    objects: list[dict]


class Renderer:
    def __init__(self, settings: dict, services: list[Service], existing_secrets: Mapping[str, str] | None = None):
        self.settings = settings
        self.services = services
        self.by_name = {s.name: s for s in services}
        self.values = SecretValues(existing_secrets)
        self.ctx = KubernetesContext({**settings, "profile": "kubernetes"}, self.by_name, self.values)
        self.passwords_secret = f"{settings['name']}-passwords"

    # -- common pieces -----------------------------------------------------------------------------
    def labels(self, service: str, component: str) -> dict:
        return {MANAGED_BY: "teapot", PART_OF: self.settings["name"], NAME: service, COMPONENT: component}

    def meta(self, name: str, service: str, component: str) -> dict:
        return {"name": name, "namespace": self.settings["namespace"],
                "labels": self.labels(service, component)}

    def image(self, name: str) -> str:
        images = self.settings["images"]
        return f"{images['registry'].rstrip('/')}/{name}:{images['tag'] or self.settings['release']}"

    def replicas(self, service: Service) -> int:
        if not service.workload.scalable or service.workload.kind == "DaemonSet":
            return 1
        key = settings_key(service)
        for section in (self.settings["services"].get(key), self.settings.get(key)):
            if isinstance(section, dict) and "replicas" in section:
                return section["replicas"]
        return 1

    def resources(self, service: Service) -> dict:
        key = settings_key(service)
        for section in (self.settings["services"].get(key), self.settings.get(key)):
            if isinstance(section, dict) and "resources" in section:
                r = section["resources"]
                return {"requests": {"cpu": r["cpu"], "memory": r["memory"]}}
        return {"requests": {"cpu": service.workload.cpu, "memory": service.workload.memory}}

    def secret_env(self, name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": self.passwords_secret, "key": key}}}

    # -- config ------------------------------------------------------------------------------------
    def config_objects(self, service: Service) -> tuple[list[dict], list[dict]]:
        """ConfigMap and Secret with the service's config files; returns (objects, volumes)."""
        cdir = config_dir(service)
        plain: dict[str, str] = {}
        secret: dict[str, str] = {}
        for owner in self.services:
            if config_dir(owner) != cdir:
                continue
            for cf in owner.config_files:
                with self.values.tracking() as used:
                    text = cf.render(self.ctx)
                (secret if cf.secret or used else plain)[cf.name] = text
        objects, sources = [], []
        if plain:
            name = _dns_name(cdir, "config", _hash(plain))
            objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": self.meta(name, cdir, "config"), "data": plain})
            sources.append({"configMap": {"name": name}})
        if secret:
            name = _dns_name(cdir, "secret", _hash(secret))
            objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": self.meta(name, cdir, "config"),
                            "data": {k: _b64(v) for k, v in secret.items()}})
            sources.append({"secret": {"name": name}})
        volumes = [{"name": "config", "projected": {"sources": sources}}] if sources else []
        return objects, volumes

    def env(self, service: Service, extra: Mapping[str, str] | None = None) -> list[dict]:
        """Environment; values that carry generated secrets come from the passwords Secret."""
        out = []
        with self.values.tracking():
            values = {**service.env(self.ctx), **(extra or {})}
        reverse = {v: k for k, v in self.values.values.items()}
        for key, value in values.items():
            if value in reverse:
                out.append(self.secret_env(key, reverse[value]))
            else:
                out.append({"name": key, "value": value})
        return out

    # -- pods --------------------------------------------------------------------------------------
    def wait_container(self, service: Service) -> list[dict]:
        targets = []
        for dep in service.depends_on:
            other = self.by_name.get(dep)
            if other is None or other.port is None:
                continue
            targets.append(f"tcp://{dep}.{self.settings['namespace']}.svc:{other.port}")
        if not targets:
            return []
        return [{"name": "wait-for-dependencies", "image": self.image("teapot"),
                 "imagePullPolicy": self.settings["images"]["pullPolicy"],
                 "command": ["teapot", "wait-for", *targets],
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]

    def container(self, service: Service, command: list[str], name: str, env: list[dict],
                  mounts: list[dict], probes: bool = True) -> dict:
        c = {"name": name, "image": self.image(service.image),
             "imagePullPolicy": self.settings["images"]["pullPolicy"], "command": command,
             "env": env, "volumeMounts": mounts, "resources": self.resources(service)}
        if service.workload.privileged:
            c["securityContext"] = {"privileged": True}
        if probes and service.port:
            c["ports"] = [{"name": "api", "containerPort": service.port, "protocol": "TCP"}]
            if service.readiness:
                c["readinessProbe"] = {"httpGet": {"path": service.readiness.path, "port": service.port},
                                       "periodSeconds": 10, "timeoutSeconds": 5}
            else:
                c["readinessProbe"] = {"tcpSocket": {"port": service.port}, "periodSeconds": 10}
            c["livenessProbe"] = {"tcpSocket": {"port": service.port}, "initialDelaySeconds": 30,
                                  "periodSeconds": 20, "failureThreshold": 6}
        return c

    def pod_spec(self, service: Service, volumes: list[dict], containers: list[dict],
                 init: list[dict], restart: str = "Always") -> dict:
        w = service.workload
        mounts_volumes = list(volumes)
        for i, path in enumerate(w.host_paths):
            mounts_volumes.append({"name": f"host-{i}", "hostPath": {"path": path}})
        spec: dict = {"containers": containers, "volumes": mounts_volumes, "restartPolicy": restart}
        if init:
            spec["initContainers"] = init
        if w.nodes in NODE_LABELS:
            spec["nodeSelector"] = {NODE_LABELS[w.nodes]: "enabled"}
        if w.host_network:
            spec["hostNetwork"] = True
            spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        if self.replicas(service) > 1:
            spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {NAME: service.name,
                                                      PART_OF: self.settings["name"]}}}}]}}
        return spec

    def mounts(self, service: Service, volumes: list[dict]) -> list[dict]:
        mounts = []
        if volumes:
            mounts.append({"name": "config", "mountPath": f"/etc/{config_dir(service)}", "readOnly": True})
        for i, path in enumerate(service.workload.host_paths):
            mounts.append({"name": f"host-{i}", "mountPath": path})
        if service.workload.kind == "StatefulSet" and service.workload.storage:
            mounts.append({"name": "data", "mountPath": service.workload.data_dir
                           or f"/var/lib/{service.name}"})
        return mounts

    def workload(self, service: Service, volumes: list[dict]) -> list[dict]:
        w = service.workload
        mounts = self.mounts(service, volumes)
        with self.values.tracking():
            command = list(service.command(self.ctx))
        container = self.container(service, command, service.name, self.env(service), mounts)
        selector = {NAME: service.name, PART_OF: self.settings["name"]}
        template = {"metadata": {"labels": self.labels(service.name, "server")},
                    "spec": self.pod_spec(service, volumes, [container], self.wait_container(service))}
        spec: dict = {"selector": {"matchLabels": selector}, "template": template}
        objects = []
        if w.kind in ("Deployment", "StatefulSet"):
            spec["replicas"] = self.replicas(service)
        if w.kind == "StatefulSet":
            spec["serviceName"] = service.name
            if w.storage:
                spec["volumeClaimTemplates"] = [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": w.storage}}}}]
        api = "apps/v1"
        objects.append({"apiVersion": api, "kind": w.kind,
                        "metadata": self.meta(service.name, service.name, "server"), "spec": spec})
        if service.port and w.kind != "DaemonSet":
            svc_spec: dict = {"selector": selector, "ports": [{"name": "api", "port": service.port,
                                                               "targetPort": service.port}]}
            if w.kind == "StatefulSet":
                svc_spec["clusterIP"] = "None"
                svc_spec["publishNotReadyAddresses"] = True
            objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": self.meta(service.name, service.name, "server"), "spec": svc_spec})
        if self.replicas(service) > 1:
            objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": self.meta(service.name, service.name, "server"),
                            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}})
        return objects

    # -- jobs --------------------------------------------------------------------------------------
    def job(self, name: str, service: Service, steps: list[tuple[str, list[str], list[dict]]],
            volumes: list[dict], image: str | None = None, secret_files: bool = False) -> dict:
        mounts = self.mounts(service, volumes) if volumes else []
        if secret_files:
            # Files from Secrets the operator provides (e.g. a Ceph admin keyring), for the
            # bootstrap Job only: the service's own pods never get them.
            for i, f in enumerate(service.extra.get("secret_files", ())):
                volumes = [*volumes, {"name": f"secret-file-{i}", "secret": {
                    "secretName": f["secret"], "items": [{"key": f["key"], "path": f["key"]}]}}]
                mounts = [*mounts, {"name": f"secret-file-{i}", "mountPath": f["path"],
                                    "subPath": f["key"], "readOnly": True}]
        containers = []
        for step_name, argv, env in steps:
            c = self.container(service, argv, _dns_name(step_name), env, mounts, probes=False)
            c.pop("securityContext", None)
            if image:
                c["image"] = image
            containers.append(c)
        init = self.wait_container(service) + containers[:-1]
        pod = self.pod_spec(service, volumes, containers[-1:], init, restart="OnFailure")
        pod.pop("affinity", None)
        pod.pop("hostNetwork", None)
        pod.pop("dnsPolicy", None)
        pod["volumes"] = [v for v in pod["volumes"] if not v["name"].startswith("host-")]
        for c in pod["containers"] + pod.get("initContainers", []):
            c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if not m["name"].startswith(("host-", "data"))]
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta(name, service.name, "job"),
                "spec": {"backoffLimit": 6, "template": {
                    "metadata": {"labels": self.labels(service.name, "job")}, "spec": pod}}}

    def database_jobs(self, service: Service) -> list[dict]:
        if not service.database:
            return []
        databases = [service.database, *service.extra.get("databases", ())]
        jobs = []
        for db in databases:
            self.values.get(f"{db}-db-password")
            sql = (f"CREATE DATABASE IF NOT EXISTS `{db}`; "
                   f"CREATE USER IF NOT EXISTS '{db}'@'%' IDENTIFIED BY '$DB_PASSWORD'; "
                   f"ALTER USER '{db}'@'%' IDENTIFIED BY '$DB_PASSWORD'; "
                   f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{db}'@'%';")
            env = [self.secret_env("MYSQL_PWD", "galera-root-password"),
                   self.secret_env("DB_PASSWORD", f"{db}-db-password")]
            self.values.get("galera-root-password")
            argv = ["sh", "-c", f'mariadb -h galera.{self.settings["namespace"]}.svc -u root -e "{sql}"']
            name = _dns_name(db, "db-init", _hash(sql))
            jobs.append(self.job(name, service, [("db-init", argv, env)], [], image=self.image("mariadb")))
        return jobs

    def sync_job(self, service: Service, volumes: list[dict]) -> list[dict]:
        if not service.bootstrap:
            return []
        steps = []
        with self.values.tracking():
            for step in service.bootstrap:
                steps.append((step.name, list(step.argv(self.ctx)), self.env(service, step.env(self.ctx))))
        digest = _hash(steps, [v.get("projected") for v in volumes])
        name = _dns_name(service.name, "db-sync", self.settings["release"], digest)
        return [self.job(name, service, steps, volumes, secret_files=True)]

    def registration_job(self, service: Service) -> list[dict]:
        reg = service.keystone
        if reg is None:
            return []
        ext = self.settings["identity"]["external"]
        argv = ["teapot", "deploy", "register", "--region", self.settings["region"],
                "--public-url", self.ctx.public_url(service.name) + reg.url_path,
                "--internal-url", self.ctx.url(service.name) + reg.url_path]
        for service_type, service_name in ((reg.service_type, reg.service_name), *reg.also_types):
            argv += ["--service", f"{service_type}={service_name}"]
        env = [{"name": "OS_AUTH_URL", "value": self.ctx.url("keystone") + "/v3"}]
        if ext:
            for var, key in (("OS_USERNAME", "username"), ("OS_PASSWORD", "password"),
                             ("OS_PROJECT_NAME", "project")):
                env.append({"name": var, "valueFrom": {"secretKeyRef": {
                    "name": ext["adminCredentialsSecret"], "key": key}}})
        else:
            self.values.get("admin-password")
            env += [{"name": "OS_USERNAME", "value": "admin"}, {"name": "OS_PROJECT_NAME", "value": "admin"},
                    self.secret_env("OS_PASSWORD", "admin-password")]
        if reg.user and reg.password_secret:
            self.values.get(reg.password_secret)
            argv += ["--user", reg.user, "--roles", ",".join(reg.roles)]
            env.append(self.secret_env("TEAPOT_SERVICE_PASSWORD", reg.password_secret))
        name = _dns_name(service.name, "ks-register", _hash(argv))
        return [self.job(name, service, [("register", argv, env)], [], image=self.image("teapot"))]

    # -- public endpoints --------------------------------------------------------------------------
    def ingress(self) -> list[dict]:
        public = [s for s in self.services if s.ingress and s.port]
        if not public:
            return []
        domain, tls = self.settings["domain"], self.settings["tls"]
        rules, objects = [], []
        for s in public:
            rules.append({"host": f"{s.ingress}.{domain}", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": s.name, "port": {"number": s.port}}}}]}})
        spec: dict = {"ingressClassName": self.settings["ingress"]["className"], "rules": rules}
        if tls["enabled"]:
            spec["tls"] = [{"hosts": [f"{s.ingress}.{domain}"], "secretName": f"{s.ingress}-tls"}
                           for s in public]
            for s in public:
                objects.append({
                    "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": self.meta(f"{s.ingress}-tls", s.name, "tls"),
                    "spec": {"secretName": f"{s.ingress}-tls", "dnsNames": [f"{s.ingress}.{domain}"],
                             "issuerRef": {"name": tls["issuer"], "kind": tls["issuerKind"]}}})
        objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "metadata": self.meta("openstack", "ingress", "ingress"), "spec": spec})
        return objects

    # -- the whole ---------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        units: list[Unit] = []
        for level in levels(self.services):
            for service in level:
                config, volumes = self.config_objects(service)
                objects = (config + self.database_jobs(service) + self.sync_job(service, volumes)
                           + self.workload(service, volumes) + self.registration_job(service))
                units.append(Unit(service.name, objects))
        units.append(Unit("ingress", self.ingress()))
        passwords = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": self.meta(self.passwords_secret, "passwords", "passwords"),
                     "data": {k: _b64(v) for k, v in sorted(self.values.values.items())}}
        return [Unit("passwords", [passwords]), *units]


def render(settings: dict, services: list[Service], existing_secrets: Mapping[str, str] | None = None,
           ) -> list[Unit]:
    """Every object of the control plane, grouped per service in apply order. Services sharing a
    config directory render the same config objects: each is kept once, in its first unit."""
    units = Renderer(settings, services, existing_secrets).units()
    seen: set[tuple[str, str]] = set()
    for unit in units:
        kept = []
        for obj in unit.objects:
            key = (obj["kind"], obj["metadata"]["name"])
            if key not in seen:
                seen.add(key)
                kept.append(obj)
        unit.objects = kept
    return units
