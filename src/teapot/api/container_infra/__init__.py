"""container-infra v1: Magnum's API (clustertemplates, clusters, nodegroups, certificates, quotas,
stats, mservices), so python-magnumclient and `openstack coe` work unchanged."""
