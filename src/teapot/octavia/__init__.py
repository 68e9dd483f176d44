"""Octavia on Teapot: a provider driver (`driver.py`) that makes Octavia's load balancers Teapot
load balancers, and a network driver (`network.py`) for which a VIP network is a Teapot tenant
network. Both run inside Octavia's API process and reach Teapot's API (`teapot_api.py`) as
Octavia's service user."""
