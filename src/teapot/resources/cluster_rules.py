"""What a cluster template, and a cluster made from one, may ask for: a Kubernetes release the
cloud serves (the label kube_tag) and network and volume drivers Teapot implements.

The API calls these on every template create and update, cluster create and upgrade; a refusal is
a ValidationError naming the field, which the API answers with a 400 (as Magnum refuses drivers
its Kubernetes driver does not know). Pure: the served releases are handed in (the API reads them
from `[clusters] kubernetes_versions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from teapot.resources.cluster import DEFAULT_KUBERNETES_VERSION
from teapot.resources.errors import ValidationError

# The CNI plugins a template may name (Magnum's Kubernetes driver takes the same two), and the
# volume driver: Cinder, attached to hosts through its attachments API (resources.storage).
NETWORK_DRIVERS = ("flannel", "calico")
VOLUME_DRIVERS = ("cinder",)


def _one_of(field: str, value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value is not None and value not in allowed:
        raise ValidationError(field, f"{value!r} is not a {what} Teapot implements; "
                                     f"use {' or '.join(allowed)}, or leave it unset")


def _serves(served: Sequence[str]) -> str:
    if not served:
        return "this cloud serves no Kubernetes release ([clusters] kubernetes_versions is empty)"
    return f"this cloud serves {', '.join(served)}"


def kubernetes_version(labels: Mapping[str, str] | None, served: Sequence[str],
                       field: str = "labels.kube_tag", template: str | None = None,
                       default: str | None = None) -> str:
    """The Kubernetes release a cluster with these labels runs: its kube_tag, which must be one
    the cloud serves; without one, `default` (a cluster moving to a template that names none keeps
    its release), else the newest pinned release, else the last served one. `template` names the
    template the labels come from, for the refusal to say so."""
    tag = (labels or {}).get("kube_tag")
    if not tag:
        if default:
            return default
        if not served:
            raise ValidationError(field, _serves(served))
        return DEFAULT_KUBERNETES_VERSION if DEFAULT_KUBERNETES_VERSION in served else served[-1]
    if tag not in served:
        asked = f"template {template} has kube_tag {tag}, which" if template else tag
        raise ValidationError(field, f"{asked} is not served here; {_serves(served)}")
    return tag


def check_template(attrs: Mapping[str, Any], served: Sequence[str],
                   before: Mapping[str, Any] | None = None) -> None:
    """Refuse a template whose drivers Teapot does not implement or whose kube_tag the cloud does
    not serve. On an update (`before`: the template as stored) only what changes is checked: a
    template made before a release was dropped can still be renamed or hidden."""
    old = before or {}

    def changed(key: str) -> bool:
        return before is None or attrs.get(key) != old.get(key)

    if changed("network_driver"):
        _one_of("network_driver", attrs.get("network_driver"), NETWORK_DRIVERS, "network driver")
    if changed("volume_driver"):
        _one_of("volume_driver", attrs.get("volume_driver"), VOLUME_DRIVERS, "volume driver")
    labels = attrs.get("labels") or {}
    if before is None or labels.get("kube_tag") != (old.get("labels") or {}).get("kube_tag"):
        if labels.get("kube_tag"):
            kubernetes_version(labels, served)


# Magnum's label for auto-healing, and Teapot's for how many failed hosts of one node group it
# replaces at once (MachineHealthCheck's maxUnhealthy).
AUTO_HEALING = "auto_healing_enabled"
MAX_UNHEALTHY = "auto_healing_max_unhealthy"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def auto_healing(labels: Mapping[str, str] | None) -> tuple[bool, int]:
    """(enabled, max_unhealthy) from a cluster's labels; a value that is neither is a
    ValidationError naming the label."""
    labels = labels or {}
    value = str(labels.get(AUTO_HEALING, "false")).strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValidationError(f"labels.{AUTO_HEALING}", f"must be true or false, not {value!r}")
    raw = str(labels.get(MAX_UNHEALTHY, "1")).strip()
    if not raw.isdigit() or int(raw) > 1000:
        raise ValidationError(f"labels.{MAX_UNHEALTHY}",
                              f"must be a whole number of hosts from 0 to 1000, not {raw!r}")
    return value in _TRUE, int(raw)


def _release(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p.split("-")[0].split("+")[0]) for p in
                           version.removeprefix("v").split(".")[:3])
    return major, minor, patch


def check_upgrade(current: str, target: str, back_to: str | None = None) -> None:
    """Kubernetes' version skew rules for moving a cluster from `current` to `target`: one minor
    release at a time (kubeadm upgrades no further), and never backwards, except back to
    `back_to`, the release the cluster ran before (a rollback, as Magnum's upgrade to the previous
    template is). Workers are never newer than masters: an upgrade replaces masters first."""
    old, new = _release(current), _release(target)
    if new[:2] > (old[0], old[1] + 1):
        raise ValidationError("cluster_template", f"the cluster runs Kubernetes {current}; "
                                                  f"{target} skips a minor release (upgrade to "
                                                  f"v{old[0]}.{old[1] + 1} first)")
    if new < old and target != back_to:
        allowed = f" (only back to {back_to}, which it ran before)" if back_to else ""
        raise ValidationError("cluster_template", f"the cluster runs Kubernetes {current}; it "
                                                  f"does not go back to {target}{allowed}")


AUTO_SCALING = "auto_scaling_enabled"
MIN_NODES, MAX_NODES = "min_node_count", "max_node_count"


def _count_label(labels: Mapping[str, str], name: str) -> int | None:
    raw = labels.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    raw = str(raw).strip()
    if not raw.isdigit() or int(raw) > 100000:
        raise ValidationError(f"labels.{name}", f"must be a whole number of hosts, not {raw!r}")
    return int(raw)


def auto_scaling(labels: Mapping[str, str] | None, node_count: int) -> tuple[bool, int, int | None]:
    """(enabled, min, max) of a new cluster's default worker node group, from Magnum's labels
    auto_scaling_enabled, min_node_count and max_node_count: the bounds a resize keeps to and
    the cluster autoscaler scales within. Autoscaling needs a maximum; node_count lies within."""
    labels = labels or {}
    value = str(labels.get(AUTO_SCALING, "false")).strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValidationError(f"labels.{AUTO_SCALING}", f"must be true or false, not {value!r}")
    low, high = _count_label(labels, MIN_NODES), _count_label(labels, MAX_NODES)
    if value in _TRUE and high is None:
        raise ValidationError(f"labels.{MAX_NODES}", f"is needed when {AUTO_SCALING} is true: "
                                                     "the most hosts the autoscaler may add")
    if high is not None and (low or 0) > high:
        raise ValidationError(f"labels.{MIN_NODES}", f"{low} is more than {MAX_NODES} {high}")
    if not (low or 0) <= node_count <= (high if high is not None else node_count):
        raise ValidationError("node_count", f"{node_count} is outside {MIN_NODES} {low or 0} to "
                                            f"{MAX_NODES} {high}")
    return value in _TRUE, low or 0, high
