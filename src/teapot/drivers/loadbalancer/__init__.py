"""Load balancers' data planes: a cluster's API endpoint (and, next, tenants' load balancers) as
HAProxy with one leg on the tenant's VLAN and one on the public network."""
