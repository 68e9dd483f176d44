"""Rows as the API writes them, for tests that work on the database directly."""

from __future__ import annotations

import time
import uuid

from cryptography.fernet import Fernet

from teapot.db.models import Host
from teapot.resources import host as hsm

FERNET = Fernet(Fernet.generate_key())


def host_row(name: str, **changes) -> Host:
    """A host row with the columns create_host fills in (state registering unless changed)."""
    now = time.time()
    status = hsm.initial_status(now)
    values = dict(
        uuid=str(uuid.uuid4()), name=name, labels={}, traits=[], generation=1,
        spec={"online": False, "bootMACAddress": "52:54:00:aa:bb:cc",
              "bmc": {"address": "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1",
                      "credentialsName": f"{name}-bmc-secret"}},
        bmc_username="admin", bmc_password=FERNET.encrypt(b"s3cret"), user_data=None,
        bmc_version=1, deleting=False, state=status["provisioning"]["state"], status=status,
        next_attempt_at=0.0, lease_owner=None, lease_expires_at=0.0, created_at=now,
        updated_at=now,
    )
    values.update(changes)
    return Host(**values)
