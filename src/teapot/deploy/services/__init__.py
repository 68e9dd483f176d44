"""One module per service. `box()` lists what `teapot up` runs."""

from __future__ import annotations

from teapot.deploy.service import Service


def box() -> list[Service]:
    from teapot.deploy.services import ironic, keystone, sushy_emulator, teapot

    return [keystone.SERVICE, ironic.SERVICE, sushy_emulator.SERVICE, teapot.API, teapot.CONDUCTOR]
