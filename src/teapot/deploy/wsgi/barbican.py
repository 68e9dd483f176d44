"""Barbican's API WSGI application, for gunicorn: the paste pipeline of TEAPOT_WSGI_PASTE_FILE.

Barbican reads its config file from its default places, `~/barbican.conf` among them: its
service runs with HOME set to its config directory.
"""

import os
import sys

sys.argv = sys.argv[:1]

from paste import deploy  # noqa: E402

application = deploy.loadapp("config:" + os.environ["TEAPOT_WSGI_PASTE_FILE"])

__all__ = ["application"]
