"""Octavia's API WSGI application, for gunicorn (config file from TEAPOT_WSGI_CONFIG_FILE)."""

import os
import sys

sys.argv = [sys.argv[0], "--config-file", os.environ["TEAPOT_WSGI_CONFIG_FILE"]]

from octavia.wsgi.api import application  # noqa: E402

__all__ = ["application"]
