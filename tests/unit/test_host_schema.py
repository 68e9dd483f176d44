"""What a host may look like (teapot.resources.host_schema): specs, BMC addresses, names, credentials,
and Metal³ manifests (BareMetalHost + Secret documents) turned into API requests."""

from __future__ import annotations

import base64
import textwrap

import pytest
import yaml

from teapot.resources.errors import ValidationError
from teapot.resources.host_schema import (
    hosts_from_manifests,
    parse_bmc_address,
    validate_credentials,
    validate_name,
    validate_spec,
    validate_traits,
)


def _spec(**changes) -> dict:
    spec = {
        "online": True,
        "bootMACAddress": "52:54:00:aa:bb:cc",
        "bmc": {"address": "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1",
                "credentialsName": "node-0-bmc-secret"},
    }
    spec.update(changes)
    return spec


def _invalid(spec) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        validate_spec(spec)
    return err.value


# --- validate_spec ------------------------------------------------------------------------------------


def test_valid_spec_passes_and_mac_is_lower_cased():
    spec = _spec(bootMACAddress="52:54:00:AA:BB:CC", automatedCleaningMode="disabled",
                 image={"url": "https://images.example.com/img.qcow2", "checksum": "A" * 64,
                        "checksumType": "sha256", "format": "qcow2"})
    out = validate_spec(spec)
    assert out["bootMACAddress"] == "52:54:00:aa:bb:cc"
    assert out["bmc"] == spec["bmc"] and out["image"] == spec["image"]
    assert spec["bootMACAddress"] == "52:54:00:AA:BB:CC"  # a copy is returned, the input is kept


def test_spec_must_be_an_object():
    assert _invalid(["online"]).field == "spec"


def test_unknown_field_is_named():
    err = _invalid(_spec(foo="bar"))
    assert err.field == "spec.foo"
    assert "unknown field" in err.message


def test_unknown_nested_field_is_named():
    spec = _spec()
    spec["bmc"]["colour"] = "teal"
    assert _invalid(spec).field == "spec.bmc.colour"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_online_must_be_a_boolean(value):
    err = _invalid(_spec(online=value))
    assert err.field == "spec.online"
    assert "boolean" in err.message


def test_online_is_required():
    spec = _spec()
    del spec["online"]
    assert _invalid(spec).field == "spec.online"


def test_bad_checksum_type_is_named():
    err = _invalid(_spec(image={"url": "http://x/i.img", "checksum": "a" * 64,
                                "checksumType": "crc32"}))
    assert err.field == "spec.image.checksumType"
    assert "crc32" in err.message and "sha256" in err.message


@pytest.mark.parametrize("mac", ["52:54:00:zz:00:01", "52:54:00:aa:bb", "52-54-00-aa-bb-cc",
                                 "52:54:00:aa:bb:cc:dd", "not a mac"])
def test_malformed_mac_is_named(mac):
    err = _invalid(_spec(bootMACAddress=mac))
    assert err.field == "spec.bootMACAddress"
    assert "not a MAC address" in err.message


def test_boot_mac_is_required():
    spec = _spec()
    del spec["bootMACAddress"]
    err = _invalid(spec)
    assert err.field == "spec.bootMACAddress"
    assert "required" in err.message


def test_bmc_is_required():
    spec = _spec()
    del spec["bmc"]
    assert _invalid(spec).field == "spec.bmc"


@pytest.mark.parametrize("address, scheme", [
    ("idrac-virtualmedia://10.0.0.1/redfish/v1/Systems/1", "idrac-virtualmedia"),
    ("foo://10.0.0.1", "foo"),
])
def test_unknown_bmc_scheme_is_named(address, scheme):
    err = _invalid(_spec(bmc={"address": address, "credentialsName": "s"}))
    assert err.field == "spec.bmc.address"
    assert f"unknown BMC scheme {scheme!r}" in err.message
    assert "redfish" in err.message  # and what is supported


@pytest.mark.parametrize("address", ["redfish://10.0.0.1", "redfish+http://10.0.0.1:8000/"])
def test_redfish_address_needs_a_system_path(address):
    err = _invalid(_spec(bmc={"address": address, "credentialsName": "s"}))
    assert err.field == "spec.bmc.address"
    assert "system" in err.message


def test_bmc_address_without_scheme_is_rejected():
    err = _invalid(_spec(bmc={"address": "10.0.0.1", "credentialsName": "s"}))
    assert err.field == "spec.bmc.address"


@pytest.mark.parametrize("checksum", ["a" * 63, "a" * 65, "g" * 64, "a" * 32])
def test_sha256_checksum_of_wrong_length_is_rejected(checksum):
    err = _invalid(_spec(image={"url": "http://x/i.qcow2", "checksum": checksum,
                                "checksumType": "sha256"}))
    assert err.field == "spec.image.checksum"
    assert "64" in err.message


def test_checksum_may_be_a_url():
    validate_spec(_spec(image={"url": "http://x/i.qcow2", "checksum": "http://x/i.qcow2.sha256sum",
                               "checksumType": "sha256"}))


def test_image_needs_a_checksum_unless_live_iso():
    err = _invalid(_spec(image={"url": "http://x/i.qcow2", "format": "qcow2"}))
    assert err.field == "spec.image.checksum"
    validate_spec(_spec(image={"url": "http://x/live.iso", "format": "live-iso"}))


def test_image_url_scheme_is_checked():
    err = _invalid(_spec(image={"url": "ftp://x/i.qcow2", "checksum": "a" * 64}))
    assert err.field == "spec.image.url"


# --- parse_bmc_address --------------------------------------------------------------------------------


def test_parse_redfish_defaults_to_https():
    bmc = parse_bmc_address("redfish://bmc.example.com/redfish/v1/Systems/1")
    assert (bmc.driver, bmc.scheme, bmc.protocol) == ("redfish", "redfish", "https")
    assert (bmc.host, bmc.port, bmc.system_id) == ("bmc.example.com", None, "/redfish/v1/Systems/1")
    assert bmc.redfish_address == "https://bmc.example.com"


def test_parse_redfish_http_with_port():
    bmc = parse_bmc_address("redfish+http://127.0.0.1:8000/redfish/v1/Systems/abc-123/")
    assert (bmc.driver, bmc.protocol, bmc.host, bmc.port) == ("redfish", "http", "127.0.0.1", 8000)
    assert bmc.system_id == "/redfish/v1/Systems/abc-123"
    assert bmc.redfish_address == "http://127.0.0.1:8000"


def test_parse_redfish_https():
    bmc = parse_bmc_address("redfish+https://10.1.2.3:8443/redfish/v1/Systems/7")
    assert (bmc.driver, bmc.protocol, bmc.port) == ("redfish", "https", 8443)
    assert bmc.redfish_address == "https://10.1.2.3:8443"


def test_parse_ipmi():
    bmc = parse_bmc_address("ipmi://10.0.0.9:623")
    assert (bmc.driver, bmc.scheme, bmc.host, bmc.port) == ("ipmi", "ipmi", "10.0.0.9", 623)
    assert bmc.protocol is None and bmc.system_id == ""


def test_parse_invalid_port_and_missing_host():
    with pytest.raises(ValidationError, match="invalid port"):
        parse_bmc_address("ipmi://10.0.0.9:99999")
    with pytest.raises(ValidationError, match="names no host"):
        parse_bmc_address("redfish:///redfish/v1/Systems/1")


def test_parse_redfish_ipv6_keeps_brackets():
    bmc = parse_bmc_address("redfish+http://[fd00::1]:8000/redfish/v1/Systems/1")
    assert bmc.redfish_address == "http://[fd00::1]:8000"


# --- validate_name and validate_credentials -----------------------------------------------------------


@pytest.mark.parametrize("name", ["node-0", "a", "rack1.node-2", "0abc"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["Node-0", "node_0", "-node", "node-", "", None, 7, "a" * 254,
                                  "node..0"])
def test_invalid_names(name):
    with pytest.raises(ValidationError) as err:
        validate_name(name)
    assert err.value.field == "name"


def test_valid_credentials():
    assert validate_credentials({"username": "admin", "password": "pw"}) == ("admin", "pw")


@pytest.mark.parametrize("creds, field", [
    (None, "bmcCredentials"),
    ("admin:pw", "bmcCredentials"),
    ({"password": "pw"}, "bmcCredentials.username"),
    ({"username": "admin"}, "bmcCredentials.password"),
    ({"username": "admin", "password": ""}, "bmcCredentials.password"),
    ({"username": "admin", "password": 1234}, "bmcCredentials.password"),
    ({"username": "admin", "password": "pw", "token": "x"}, "bmcCredentials.token"),
])
def test_invalid_credentials(creds, field):
    with pytest.raises(ValidationError) as err:
        validate_credentials(creds)
    assert err.value.field == field


# --- hosts_from_manifests -----------------------------------------------------------------------------

BMH = textwrap.dedent("""\
    ---
    apiVersion: metal3.io/v1alpha1
    kind: BareMetalHost
    metadata:
      name: node-0
      namespace: metal3
      labels:
        rack: r1
    spec:
      online: true
      bootMACAddress: "52:54:00:AB:CD:01"
      bootMode: UEFI
      automatedCleaningMode: disabled
      bmc:
        address: redfish+http://192.168.111.1:8000/redfish/v1/Systems/5f1e1f9a-0001
        credentialsName: node-0-bmc-secret
        disableCertificateVerification: true
      image:
        url: http://172.22.0.1/images/ubuntu.qcow2
        checksum: http://172.22.0.1/images/ubuntu.qcow2.sha256sum
        checksumType: sha256
        format: qcow2
    """)

SECRET_DATA = textwrap.dedent(f"""\
    ---
    apiVersion: v1
    kind: Secret
    metadata:
      name: node-0-bmc-secret
      namespace: metal3
    type: Opaque
    data:
      username: {base64.b64encode(b"admin").decode()}
      password: {base64.b64encode(b"s3cret-bmc").decode()}
    """)

SECRET_STRING_DATA = textwrap.dedent("""\
    ---
    apiVersion: v1
    kind: Secret
    metadata:
      name: node-0-bmc-secret
    type: Opaque
    stringData:
      username: admin
      password: s3cret-bmc
    """)


def _docs(*texts: str) -> list:
    return list(yaml.safe_load_all("".join(texts)))


def _manifest_error(*texts: str) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        hosts_from_manifests(_docs(*texts))
    return err.value


@pytest.mark.parametrize("secret", [SECRET_DATA, SECRET_STRING_DATA], ids=["data", "stringData"])
def test_manifest_with_secret_becomes_a_request(secret):
    requests = hosts_from_manifests(_docs(secret, BMH))  # the Secret may come first or last
    assert len(requests) == 1
    request = requests[0]
    assert request["name"] == "node-0"
    assert request["labels"] == {"rack": "r1"}
    assert request["bmcCredentials"] == {"username": "admin", "password": "s3cret-bmc"}
    assert request["spec"]["bootMACAddress"] == "52:54:00:ab:cd:01"
    assert request["spec"]["bmc"]["credentialsName"] == "node-0-bmc-secret"
    assert request["spec"]["image"]["format"] == "qcow2"
    assert "userData" not in request
    assert hosts_from_manifests(_docs(BMH, secret)) == requests


def test_manifest_with_several_hosts_and_empty_documents():
    second = BMH.replace("node-0", "node-1").replace("AB:CD:01", "AB:CD:02").replace(
        "credentialsName: node-1-bmc-secret", "credentialsName: node-0-bmc-secret")
    requests = hosts_from_manifests(_docs(BMH, "---\n", SECRET_DATA, second))
    assert [r["name"] for r in requests] == ["node-0", "node-1"]
    assert requests[1]["spec"]["bootMACAddress"] == "52:54:00:ab:cd:02"
    assert requests[1]["bmcCredentials"]["password"] == "s3cret-bmc"


def test_manifest_without_the_secret_names_credentials_name():
    err = _manifest_error(BMH)
    assert "spec.bmc.credentialsName" in err.field
    assert "node-0" in err.field
    assert "node-0-bmc-secret" in err.message


def test_manifest_with_an_invalid_spec_names_host_and_field():
    err = _manifest_error(SECRET_DATA, BMH.replace("bootMode: UEFI", "bootMode: UEFI\n  foo: 1"))
    assert err.field == "BareMetalHost node-0: spec.foo"


def test_manifest_secret_without_password_is_rejected():
    err = _manifest_error(SECRET_STRING_DATA.replace("  password: s3cret-bmc\n", ""), BMH)
    assert err.field == "Secret node-0-bmc-secret"
    assert "password" in err.message


def test_manifest_user_data_secret_is_resolved():
    user_data = "#cloud-config\nruncmd:\n  - echo hello\n"
    bmh = BMH + "  userData:\n    name: node-0-user-data\n    namespace: metal3\n"
    ud_secret = textwrap.dedent(f"""\
        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: node-0-user-data
        data:
          userData: {base64.b64encode(user_data.encode()).decode()}
        """)
    (request,) = hosts_from_manifests(_docs(bmh, SECRET_DATA, ud_secret))
    assert request["userData"] == user_data
    assert request["spec"]["userData"]["name"] == "node-0-user-data"


def test_manifest_missing_user_data_secret_is_named():
    bmh = BMH + "  userData:\n    name: node-0-user-data\n"
    err = _manifest_error(bmh, SECRET_DATA)
    assert "spec.userData" in err.field
    assert "node-0-user-data" in err.message


def test_manifest_other_kinds_are_rejected():
    deployment = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: 1
        """)
    err = _manifest_error(deployment, "---\n", SECRET_DATA, BMH)
    assert err.field == "document 1.kind"
    assert "apps/v1/Deployment" in err.message


def test_manifest_wrong_api_version_of_bare_metal_host_is_rejected():
    err = _manifest_error(SECRET_DATA, BMH.replace("metal3.io/v1alpha1", "metal3.io/v1"))
    assert err.field == "document 2.kind"


def test_manifest_invalid_base64_is_rejected():
    bad = SECRET_DATA.replace(base64.b64encode(b"s3cret-bmc").decode(), "not base64!!")
    err = _manifest_error(bad, BMH)
    assert err.field == "Secret node-0-bmc-secret.data.password"
    assert "base64" in err.message


def test_manifest_non_string_secret_data_is_a_validation_error():
    bad = SECRET_DATA.replace(base64.b64encode(b"s3cret-bmc").decode(), "12345678")
    err = _manifest_error(bad, BMH)
    assert err.field == "Secret node-0-bmc-secret.data.password"


def test_manifest_mac_is_read_as_kubernetes_reads_it():
    from teapot.resources.host_schema import load_manifests

    docs = load_manifests(
        "apiVersion: metal3.io/v1alpha1\nkind: BareMetalHost\nmetadata: {name: n1}\n"
        "spec:\n  online: false\n  bootMACAddress: 52:54:00:12:34:56\n"
        "  bmc: {address: 'redfish://bmc/redfish/v1/Systems/1', credentialsName: s}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
        "stringData: {username: u, password: p}\n")
    (request,) = hosts_from_manifests(docs)
    assert request["spec"]["bootMACAddress"] == "52:54:00:12:34:56"


def test_traits_standard_or_custom_sorted_and_deduplicated():
    assert validate_traits(None) == []
    assert validate_traits(["HW_CPU_X86_AVX2", "CUSTOM_GPU", "CUSTOM_GPU"]) == [
        "CUSTOM_GPU", "HW_CPU_X86_AVX2"]


@pytest.mark.parametrize("traits, field", [
    (["HW_CPU_X86_NO_SUCH_THING"], "traits[0]"),
    (["CUSTOM_GPU", "custom_gpu"], "traits[1]"),
    (["CUSTOM_"], "traits[0]"),
    (["CUSTOM_GPU-A100"], "traits[0]"),
    ([3], "traits[0]"),
    ("CUSTOM_GPU", "traits"),
])
def test_bad_traits_are_named(traits, field):
    with pytest.raises(ValidationError) as e:
        validate_traits(traits)
    assert e.value.field == field


def test_manifest_trait_labels_become_traits():
    bmh = BMH.replace("    rack: r1\n", "    rack: r1\n    trait.teapot.openstack.org/CUSTOM_GPU: \"true\"\n"
                      "    trait.teapot.openstack.org/HW_CPU_X86_AVX2: \"true\"\n")
    assert bmh != BMH
    (request,) = hosts_from_manifests(_docs(SECRET_DATA, bmh))
    assert request["traits"] == ["CUSTOM_GPU", "HW_CPU_X86_AVX2"]
    assert request["labels"] == {"rack": "r1"}
    bad = bmh.replace("CUSTOM_GPU", "CUSTOM_gpu")
    err = _manifest_error(SECRET_DATA, bad)
    assert err.field.startswith("BareMetalHost node-0: metadata.labels")
    assert "CUSTOM_gpu" in err.message
