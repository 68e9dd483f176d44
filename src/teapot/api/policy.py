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
    policy.RuleDefault("admin_or_reader", "rule:admin or rule:project_reader"),
    policy.RuleDefault("admin_or_member", "rule:admin or rule:project_member"),
    *(
        policy.DocumentedRuleDefault(
            f"container-infra:{name}", rule, summary, [{"path": path, "method": method}])
        for name, rule, summary, path, method in [
            ("clustertemplate:get_all", "rule:admin_or_reader", "List cluster templates",
             "/v1/clustertemplates", "GET"),
            ("clustertemplate:get", "rule:admin_or_reader", "Show a cluster template",
             "/v1/clustertemplates/{id}", "GET"),
            ("clustertemplate:create", "rule:admin_or_member", "Create a cluster template",
             "/v1/clustertemplates", "POST"),
            ("clustertemplate:publish", "rule:admin", "Make a cluster template public",
             "/v1/clustertemplates", "POST"),
            ("clustertemplate:update", "rule:admin_or_member", "Update a cluster template",
             "/v1/clustertemplates/{id}", "PATCH"),
            ("clustertemplate:delete", "rule:admin_or_member", "Delete a cluster template",
             "/v1/clustertemplates/{id}", "DELETE"),
            ("cluster:get_all", "rule:admin_or_reader", "List clusters", "/v1/clusters", "GET"),
            ("cluster:get", "rule:admin_or_reader", "Show a cluster", "/v1/clusters/{id}", "GET"),
            ("cluster:create", "rule:admin_or_member", "Create a cluster", "/v1/clusters", "POST"),
            ("cluster:update", "rule:admin_or_member", "Update, resize or upgrade a cluster",
             "/v1/clusters/{id}", "PATCH"),
            ("cluster:delete", "rule:admin_or_member", "Delete a cluster", "/v1/clusters/{id}",
             "DELETE"),
            ("nodegroup:get", "rule:admin_or_reader", "Show node groups",
             "/v1/clusters/{id}/nodegroups", "GET"),
            ("nodegroup:write", "rule:admin_or_member", "Create, update or delete node groups",
             "/v1/clusters/{id}/nodegroups", "POST"),
            ("certificate:get", "rule:admin_or_reader", "Show a cluster's CA",
             "/v1/certificates/{cluster}", "GET"),
            ("certificate:create", "rule:admin_or_member", "Sign a CSR with a cluster's CA",
             "/v1/certificates", "POST"),
            ("certificate:rotate_ca", "rule:admin_or_member", "Rotate a cluster's CA",
             "/v1/certificates/{cluster}", "PATCH"),
            ("quota:get", "rule:admin_or_reader", "Show a project's quota",
             "/v1/quotas/{project}/{resource}", "GET"),
            ("quota:write", "rule:admin", "Set quotas", "/v1/quotas", "POST"),
            ("stats:get", "rule:admin_or_reader", "Cluster statistics", "/v1/stats", "GET"),
            ("mservice:get_all", "rule:admin", "List Teapot's services", "/v1/mservices", "GET"),
            ("hostclass:get", "rule:admin_or_reader", "List host classes (flavors)",
             "/v1/hostclasses", "GET"),
            ("hostclass:write", "rule:admin", "Manage host classes", "/v1/hostclasses", "POST"),
        ]
    ),
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

NETWORK_RULES = [
    policy.DocumentedRuleDefault(f"teapot:network:{action}", rule, summary,
                                 [{"path": path, "method": method}])
    for action, rule, summary, path, method in [
        ("get_all", "rule:admin_or_reader", "List the project's tenant networks", "/v1/networks",
         "GET"),
        ("get", "rule:admin_or_reader", "Show a tenant network", "/v1/networks/{network}", "GET"),
        ("get_any", "rule:admin", "See every project's networks and their VLAN ids",
         "/v1/networks", "GET"),
        ("create", "rule:admin_or_member", "Create a tenant network", "/v1/networks", "POST"),
        ("delete", "rule:admin_or_member", "Delete a tenant network", "/v1/networks/{network}",
         "DELETE"),
    ]
]
RULES.extend(NETWORK_RULES)

LOADBALANCER_RULES = [
    policy.DocumentedRuleDefault(f"teapot:loadbalancer:{action}", rule, summary,
                                 [{"path": path, "method": method}])
    for action, rule, summary, path, method in [
        ("get_all", "rule:admin_or_reader", "List the project's load balancers",
         "/v1/loadbalancers", "GET"),
        ("get", "rule:admin_or_reader", "Show a load balancer", "/v1/loadbalancers/{lb}", "GET"),
        ("get_any", "rule:admin", "See every project's load balancers", "/v1/loadbalancers",
         "GET"),
        ("create", "rule:admin_or_member", "Create a load balancer", "/v1/loadbalancers", "POST"),
        ("create_any", "rule:admin", "Create a load balancer in another project",
         "/v1/loadbalancers", "POST"),
        ("update", "rule:admin_or_member", "Change a load balancer", "/v1/loadbalancers/{lb}",
         "PATCH"),
        ("delete", "rule:admin_or_member", "Delete a load balancer", "/v1/loadbalancers/{lb}",
         "DELETE"),
    ]
]
RULES.extend(LOADBALANCER_RULES)

VOLUME_ATTACHMENT_RULES = [
    policy.DocumentedRuleDefault(f"teapot:volume_attachment:{action}", rule, summary,
                                 [{"path": path, "method": method}])
    for action, rule, summary, path, method in [
        ("get_all", "rule:admin_or_reader", "List the volumes attached to a cluster's hosts",
         "/v1/clusters/{cluster}/volume_attachments", "GET"),
        ("get", "rule:admin_or_reader", "Show a volume attachment",
         "/v1/clusters/{cluster}/volume_attachments/{attachment}", "GET"),
        ("create", "rule:admin_or_member", "Attach a volume to a host of a cluster",
         "/v1/clusters/{cluster}/volume_attachments", "POST"),
        ("delete", "rule:admin_or_member", "Detach a volume from a host of a cluster",
         "/v1/clusters/{cluster}/volume_attachments/{attachment}", "DELETE"),
    ]
]
RULES.extend(VOLUME_ATTACHMENT_RULES)

BUCKET_CREDENTIAL_RULES = [
    policy.DocumentedRuleDefault(f"teapot:bucket_credential:{action}", rule, summary,
                                 [{"path": path, "method": method}])
    for action, rule, summary, path, method in [
        ("get_all", "rule:admin_or_reader", "List a cluster's bucket credentials (access keys)",
         "/v1/clusters/{cluster}/bucket_credentials", "GET"),
        ("create", "rule:admin_or_member", "Make an S3 credential for a cluster",
         "/v1/clusters/{cluster}/bucket_credentials", "POST"),
        ("delete", "rule:admin_or_member", "Delete a cluster's S3 credential",
         "/v1/clusters/{cluster}/bucket_credentials/{access}", "DELETE"),
    ]
]
RULES.extend(BUCKET_CREDENTIAL_RULES)

WHY = {
    "teapot:network": "this needs the member role in the network's project (reader to read)",
    "teapot:loadbalancer": "this needs the member role in the load balancer's project (reader "
                           "to read)",
    "teapot:volume_attachment": "this needs the member role in the cluster's project (reader "
                                "to read)",
    "teapot:bucket_credential": "this needs the member role in the cluster's project (reader "
                                "to list)",
    "teapot:host": "hosts are managed by cloud administrators and need the admin role",
    "container-infra:clustertemplate:publish": "only cloud administrators make public templates",
    "container-infra:quota:write": "quotas are set by cloud administrators",
    "container-infra:mservice": "Teapot's own services are for cloud administrators",
    "container-infra:hostclass:write": "host classes are defined by cloud administrators",
    "container-infra": "this needs the member role in the object's project (reader to read)",
}


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
