"""Errors that say a dependency is down, named; everything else stays Teapot's own bug."""

from __future__ import annotations

import socket

import httpx
import openstack
import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc
from sqlalchemy import exc as sa_exc

from teapot import dependencies


def test_services_are_named_by_the_origin_they_were_called_at():
    dependencies.name("http://127.0.0.1:16385/v1", "Ironic")
    error = ksa_exc.ConnectFailure("Unable to establish connection to "
                                   "http://127.0.0.1:16385/v1/nodes/x: [Errno 111] Connection refused")
    down = dependencies.classify(error)
    assert str(down) == "waiting for Ironic: connection refused"
    other = ksa_exc.ConnectTimeout("Request to http://127.0.0.1:61009/v2/shares timed out")
    assert str(dependencies.classify(other)) == \
        "waiting for the service at http://127.0.0.1:61009: it did not answer in time"


def test_openstacksdk_httpx_and_the_database():
    def answer(status: int) -> sdk_exc.HttpException:
        response = requests.Response()
        response.status_code, response.url = status, "http://127.0.0.1:16385/v1/nodes"
        return sdk_exc.HttpException("answered", response=response)

    assert str(dependencies.classify(answer(503))) == "waiting for Ironic: it answered 503"
    assert dependencies.classify(answer(409)) is None
    request = httpx.Request("GET", "http://127.0.0.1:16443/readyz")
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=request)
    assert dependencies.classify(refused).dependency == "the service at http://127.0.0.1:16443"
    locked = sa_exc.OperationalError("UPDATE", {}, Exception("database is locked"))
    assert str(dependencies.classify(locked)) == "waiting for the database: database is locked"


def test_a_cause_further_down_the_chain_counts_and_a_bug_does_not():
    try:
        try:
            raise ksa_exc.ConnectFailure("to http://127.0.0.1:9/ : Connection refused")
        except ksa_exc.ConnectFailure as e:
            raise RuntimeError("while provisioning") from e
    except RuntimeError as wrapped:
        assert dependencies.classify(wrapped).why == "connection refused"
    assert dependencies.classify(KeyError("spec")) is None
    assert dependencies.classify(ValueError("connection refused")) is None  # words are not enough


@pytest.fixture
def silent_port():
    """A port that accepts connections into its backlog and never answers: a frozen server."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def test_ironic_unreachable_before_any_answer_is_named_too(silent_port):
    """openstacksdk's first call discovers versions; when that finds nothing it says so without
    the cause: still Ironic down, and within the driver's timeout when Ironic is frozen."""
    from teapot.drivers.provisioner.ironic import IronicProvisioner

    url = f"http://127.0.0.1:{silent_port}"
    dependencies.name(url, "Ironic")
    ironic = IronicProvisioner(url)
    ironic.conn = openstack.connection.Connection(  # the driver's own, with a shorter timeout
        auth_type="none", auth={"endpoint": url}, baremetal_endpoint_override=url,
        app_name="teapot", api_timeout=0.5)
    with pytest.raises(Exception) as caught:
        ironic.refresh()
    assert str(dependencies.classify(caught.value)).startswith("waiting for Ironic: ")
