"""Teapot's COSI driver: buckets and access to them for tenant clusters (see driver.py)."""

NAME = "cosi.teapot.openstack.org"  # the driver's name, in its classes and GetInfo
