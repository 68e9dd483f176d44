"""Teapot: bare-metal Kubernetes clouds beside OpenStack."""

__version__ = "0.1.0"
