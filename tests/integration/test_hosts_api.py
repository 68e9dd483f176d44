"""The hosts API with real Ironic behind it: bad input, errors recorded, deletion, secrets kept."""

from __future__ import annotations

import json
import textwrap
import uuid

import httpx
import pytest

from teapot.cli.client import TeapotError

from .conftest import wait_for

GOOD_MAC = "52:54:00:ff:00:01"


def _body(box, name: str, **spec_changes) -> dict:
    spec = {
        "online": False,
        "bootMACAddress": GOOD_MAC,
        "bmc": {"address": f"redfish+http://127.0.0.1:{box.ports['sushy-emulator']}"
                           f"/redfish/v1/Systems/{uuid.uuid4()}"},
    }
    spec.update(spec_changes)
    return {"name": name, "spec": spec, "bmcCredentials": {"username": "admin", "password": "s3cret-bmc"}}


@pytest.mark.parametrize("change, field, words", [
    ({"bmc": {"address": "idrac://10.0.0.1"}}, "spec.bmc.address", "unknown BMC scheme 'idrac'"),
    ({"bootMACAddress": "52:54:00:zz:00:01"}, "spec.bootMACAddress", "not a MAC address"),
    ({"image": {"url": "http://x/i.img", "checksum": "a" * 64, "checksumType": "crc32"}},
     "spec.image.checksumType", "crc32"),
    ({"online": "yes"}, "spec.online", "true or false"),
    ({"colour": "teal"}, "spec.colour", "unknown field"),
])
def test_bad_spec_is_400_naming_the_field(admin, box, change, field, words):
    before = len(admin.list_hosts())
    with pytest.raises(TeapotError) as err:
        admin.create_host(_body(box, "bad-host", **change))
    assert field in str(err.value) and words in str(err.value)
    assert len(admin.list_hosts()) == before


def test_missing_credentials_is_400(admin, box):
    body = _body(box, "no-creds")
    del body["bmcCredentials"]
    with pytest.raises(TeapotError, match="bmcCredentials"):
        admin.create_host(body)


def test_duplicate_name_is_400(box):
    token = _token(box)
    response = httpx.post(box.url("teapot-api") + "/v1/hosts", json=_body(box, "host-0"),
                          headers={"X-Auth-Token": token})
    assert response.status_code == 400
    assert "name" in response.json()["errors"][0]["detail"]
    assert "already exists" in response.json()["errors"][0]["detail"]


def _token(box) -> str:
    from teapot.cli.client import TeapotClient

    return TeapotClient.from_cloud("teapot-admin", str(box.clouds)).api.session.get_token()


def _ironic_node(box, name: str) -> dict | None:
    response = httpx.get(f"{box.url('ironic')}/v1/nodes/{name}",
                         headers={"X-OpenStack-Ironic-API-Version": "latest"})
    return response.json() if response.status_code == 200 else None


def test_unreachable_bmc_is_recorded_retried_then_deleted_from_ironic(admin, box):
    host = admin.create_host(_body(box, "ghost", bootMACAddress="52:54:00:ff:00:02"))
    assert host["state"] == "registering"
    assert "password" not in json.dumps(host) and "s3cret-bmc" not in json.dumps(host)
    failed = wait_for(lambda: (h := admin.get_host("ghost"))["status"].get("errorCount", 0) >= 2 and h,
                      timeout=90, what="two failed registration attempts")
    assert failed["status"]["operationalStatus"] == "error"
    assert failed["status"]["errorType"] == "registration error"
    assert failed["status"]["errorMessage"]
    node = _ironic_node(box, "ghost")
    assert node is not None and node["driver_info"]["redfish_password"] == "******"

    admin.delete_host("ghost")
    wait_for(lambda: _gone(admin, "ghost"), timeout=90, what="host deleted")
    assert _ironic_node(box, "ghost") is None


def _gone(client, name: str) -> bool:
    try:
        client.get_host(name)
    except TeapotError:
        return True
    return False


BMH_YAML = textwrap.dedent("""\
    apiVersion: v1
    kind: Secret
    metadata:
      name: rack1-bmc-secret
    type: Opaque
    data:
      username: YWRtaW4=
      password: cmFjazEtcGFzc3dvcmQ=
    ---
    apiVersion: metal3.io/v1alpha1
    kind: BareMetalHost
    metadata:
      name: rack1-node
      labels:
        rack: "1"
    spec:
      online: false
      bootMACAddress: 52:54:00:FF:00:03
      bmc:
        address: redfish+http://127.0.0.1:{port}/redfish/v1/Systems/{system}
        credentialsName: rack1-bmc-secret
      automatedCleaningMode: disabled
    """)


def test_apply_genuine_baremetalhost_yaml(box, admin, tmp_path):
    manifest = tmp_path / "bmh.yaml"
    manifest.write_text(BMH_YAML.format(port=box.ports["sushy-emulator"], system=uuid.uuid4()))
    result = box.teapot("host", "apply", "-f", str(manifest), "-o", "json")
    rows = json.loads(result.stdout)
    assert rows == [{"name": "rack1-node", "action": "created", "state": "registering"}]
    assert "rack1-password" not in result.stdout + result.stderr
    host = admin.get_host("rack1-node")
    assert host["labels"] == {"rack": "1"}
    assert host["spec"]["bootMACAddress"] == "52:54:00:ff:00:03"
    node = wait_for(lambda: _ironic_node(box, "rack1-node"), what="Ironic node")
    assert node["driver_info"]["redfish_address"] == box.url("sushy-emulator")
    assert node["driver_info"]["redfish_username"] == "admin"
    assert node["automated_clean"] is False

    again = json.loads(box.teapot("host", "apply", "-f", str(manifest), "-o", "json").stdout)
    assert again[0]["action"] == "configured"
    box.teapot("host", "delete", "rack1-node", "--wait", "--timeout", "120")
    assert _ironic_node(box, "rack1-node") is None


def test_apply_without_credentials_secret_fails_clearly(box, admin, tmp_path):
    manifest = tmp_path / "bmh.yaml"
    text = BMH_YAML.format(port=box.ports["sushy-emulator"], system=uuid.uuid4())
    manifest.write_text(text.split("---\n", 1)[1])
    result = box.teapot("host", "apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert "spec.bmc.credentialsName" in result.stderr and "rack1-bmc-secret" in result.stderr
    assert "rack1-node" not in {h["name"] for h in admin.list_hosts()}


def test_bmc_passwords_never_leave(box, admin):
    bmc_password = box.secret("bmc-password")
    listed = json.dumps(admin.list_hosts())
    shown = box.teapot("host", "show", "host-0", "-f", "json").stdout
    for text in (listed, shown):
        assert bmc_password not in text
    for log in (box.state_dir / "logs").glob("*.log"):
        content = log.read_text(errors="replace")
        assert bmc_password not in content, f"BMC password in {log.name}"
        assert "s3cret-bmc" not in content, f"BMC password in {log.name}"
