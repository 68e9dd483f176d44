"""RBAC through oslo.policy, with OpenStack's default roles (admin, member, reader) and project scope."""

from __future__ import annotations

from oslo_config import cfg
from oslo_context import context
from oslo_policy import policy

from teapot.api.auth import Identity

ADMIN = "role:admin"

RULES = [
    policy.RuleDefault("admin", ADMIN, description="Cloud administrators."),
    policy.RuleDefault("project_reader", "role:reader and project_id:%(project_id)s"),
    policy.RuleDefault("project_member", "role:member and project_id:%(project_id)s"),
    *(
        policy.DocumentedRuleDefault(
            f"teapot:host:{action}", "rule:admin", f"{summary} (hosts are managed by cloud administrators)",
            [{"path": path, "method": method}],
        )
        for action, summary, path, method in [
            ("get_all", "List hosts", "/v1/hosts", "GET"),
            ("get", "Show a host", "/v1/hosts/{host}", "GET"),
            ("create", "Create a host", "/v1/hosts", "POST"),
            ("update", "Update a host", "/v1/hosts/{host}", "PATCH"),
            ("delete", "Delete a host", "/v1/hosts/{host}", "DELETE"),
        ]
    ),
]

WHY = {"teapot:host": "hosts are managed by cloud administrators and need the admin role"}


class Forbidden(Exception):
    pass


class Enforcer:
    def __init__(self, conf: cfg.ConfigOpts | None = None):
        if conf is None:  # the defaults alone, no policy file
            conf = cfg.ConfigOpts()
            conf(args=[], default_config_files=[], use_env=False)
        self._enforcer = policy.Enforcer(conf)
        self._enforcer.register_defaults(RULES)

    def authorize(self, rule: str, identity: Identity, target: dict | None = None) -> None:
        ctx = context.RequestContext(
            user_id=identity.user_id, project_id=identity.project_id, roles=list(identity.roles),
            system_scope=identity.system_scope,
        )
        target = {"project_id": identity.project_id, **(target or {})}
        if not self._enforcer.authorize(rule, target, ctx, do_raise=False):
            why = next((text for prefix, text in WHY.items() if rule.startswith(prefix)), "")
            roles = ", ".join(identity.roles) or "none"
            raise Forbidden(f"Policy does not allow {rule} to be performed: {why} "
                            f"(your roles: {roles}).")
