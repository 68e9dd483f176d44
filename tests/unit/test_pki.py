"""teapot.pki: per-cluster CAs, CSR signing, kubeconfig and kubeadm join secrets."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import shutil
import subprocess

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from teapot import pki


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.new_ca("teapot-cluster-ca")


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _verify(issuer: x509.Certificate, cert: x509.Certificate) -> None:
    """Raises InvalidSignature unless ``issuer``'s key signed ``cert``."""
    issuer.public_key().verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )


def _csr(
    subject: x509.Name, san: list[x509.GeneralName] | None = None
) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(key, hashes.SHA256())


ADMIN = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
    ]
)


# --- new_ca -------------------------------------------------------------------------------------


def test_new_ca_is_a_self_signed_ca(ca):
    cert = _cert(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "teapot-cluster-ca"
    assert cert.issuer == cert.subject
    _verify(cert, cert)  # self-signed: its own key verifies its signature

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.public_key().key_size == 2048
    assert cert.version == x509.Version.v3


def test_new_ca_validity_is_backdated_and_lasts_the_requested_days(ca):
    cert = _cert(ca.cert_pem)
    now = datetime.datetime.now(datetime.UTC)
    assert now - datetime.timedelta(minutes=6) < cert.not_valid_before_utc
    assert cert.not_valid_before_utc <= now - datetime.timedelta(minutes=4)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(days=3650, minutes=5)) < datetime.timedelta(minutes=1)


def test_new_ca_key_is_unencrypted_pkcs8_and_matches_the_cert(ca):
    assert ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == _cert(
        ca.cert_pem
    ).public_key().public_bytes(serialization.Encoding.DER, spki)


def test_two_cas_have_different_serials_and_keys():
    one, two = pki.new_ca("a"), pki.new_ca("a")
    assert _cert(one.cert_pem).serial_number != _cert(two.cert_pem).serial_number
    assert one.key_pem != two.key_pem


def test_repr_never_shows_the_key(ca):
    for text in (repr(ca), str(ca), f"{ca}", repr([ca])):
        assert "PRIVATE KEY" not in text
        assert ca.key_pem.decode() not in text
        assert "teapot-cluster-ca" in text


# --- sign_csr -----------------------------------------------------------------------------------


def test_sign_csr_keeps_the_subject_and_chains_to_the_ca(ca):
    san = [x509.DNSName("admin.example.org"), x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]
    csr = _csr(ADMIN, san)
    pem = pki.sign_csr(ca, csr.public_bytes(serialization.Encoding.PEM))
    cert = _cert(pem)
    ca_cert = _cert(ca.cert_pem)

    assert cert.subject == ADMIN  # exactly, order included
    assert cert.subject.rfc4514_string() == "O=system:masters,CN=admin"
    assert cert.issuer == ca_cert.subject
    _verify(ca_cert, cert)
    assert cert.public_key() == csr.public_key()

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert ExtendedKeyUsageOID.SERVER_AUTH not in eku
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    got_san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(got_san) == san


def test_sign_csr_accepts_str_and_omits_san_when_none_asked(ca):
    csr = _csr(ADMIN)
    cert = _cert(pki.sign_csr(ca, csr.public_bytes(serialization.Encoding.PEM).decode(), days=30))
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - datetime.timedelta(days=30, minutes=5)) < datetime.timedelta(minutes=1)


def test_sign_csr_does_not_copy_a_requested_ca_flag(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(ADMIN)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = _cert(pki.sign_csr(ca, csr.public_bytes(serialization.Encoding.PEM)))
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize("garbage", [b"", b"not a csr", "-----BEGIN CERTIFICATE REQUEST-----\nxx"])
def test_sign_csr_rejects_garbage(ca, garbage):
    with pytest.raises(ValueError, match="the CSR is not valid PEM"):
        pki.sign_csr(ca, garbage)


def test_sign_csr_rejects_a_tampered_signature(ca):
    der = bytearray(_csr(ADMIN).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the signature BIT STRING is the last field of the CSR
    b64 = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n"
    # it still parses, so the rejection below is about the signature, not the encoding
    assert not x509.load_pem_x509_csr(tampered.encode()).is_signature_valid
    with pytest.raises(ValueError, match="the CSR signature does not verify"):
        pki.sign_csr(ca, tampered)


def test_sign_csr_rejects_a_ca_whose_key_does_not_match(ca):
    other = pki.new_ca("other")
    mixed = pki.CA(cert_pem=ca.cert_pem, key_pem=other.key_pem)
    with pytest.raises(ValueError, match="does not match"):
        pki.sign_csr(mixed, _csr(ADMIN).public_bytes(serialization.Encoding.PEM))


def test_certificates_never_outlive_the_ca():
    short = pki.new_ca("short", days=10)
    cert = _cert(pki.issue(short, "kubelet", days=365)[0])
    assert cert.not_valid_after_utc <= _cert(short.cert_pem).not_valid_after_utc


# --- issue --------------------------------------------------------------------------------------


def test_issue_client_certificate(ca):
    cert_pem, key_pem = pki.issue(ca, "admin", ["system:masters"])
    cert = _cert(cert_pem)
    assert cert.subject == ADMIN
    _verify(_cert(ca.cert_pem), cert)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_issue_server_certificate_has_dns_and_ip_sans(ca):
    names = ["api.example.org", "10.0.0.5", "2001:db8::1"]
    cert_pem, _ = pki.issue(ca, "kube-apiserver", server_names=names)
    cert = _cert(cert_pem)
    _verify(_cert(ca.cert_pem), cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("2001:db8::1"),
    ]


def test_issue_gives_a_new_key_each_time(ca):
    assert pki.issue(ca, "a")[1] != pki.issue(ca, "a")[1]


# --- rotate, fingerprint ------------------------------------------------------------------------


def test_rotate_gives_a_new_key_and_cert(ca):
    new = pki.rotate(ca, "teapot-cluster-ca-2")
    assert new.key_pem != ca.key_pem
    assert _cert(new.cert_pem).public_key() != _cert(ca.cert_pem).public_key()
    new_cert = _cert(new.cert_pem)
    assert new_cert.subject.rfc4514_string() == "CN=teapot-cluster-ca-2"
    assert new_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    _verify(new_cert, new_cert)


def test_fingerprint_is_sha256_of_the_der(ca):
    der = _cert(ca.cert_pem).public_bytes(serialization.Encoding.DER)
    assert pki.fingerprint(ca.cert_pem) == hashlib.sha256(der).hexdigest()
    assert pki.fingerprint(ca.cert_pem.decode()) == pki.fingerprint(ca.cert_pem)
    assert re.fullmatch(r"[0-9a-f]{64}", pki.fingerprint(ca.cert_pem))


# --- kubeconfig ---------------------------------------------------------------------------------


def test_kubeconfig(ca):
    cert_pem, key_pem = pki.issue(ca, "admin", ["system:masters"])
    text = pki.kubeconfig("prod", "https://203.0.113.10:6443", ca.cert_pem, cert_pem, key_pem)
    config = yaml.safe_load(text)
    assert config["kind"] == "Config" and config["apiVersion"] == "v1"

    (cluster,) = config["clusters"]
    (user,) = config["users"]
    (context,) = config["contexts"]
    assert cluster["name"] == "prod"
    assert cluster["cluster"]["server"] == "https://203.0.113.10:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == ca.cert_pem
    assert user["name"] == "admin"
    client_cert = base64.b64decode(user["user"]["client-certificate-data"])
    assert client_cert == cert_pem
    _verify(_cert(ca.cert_pem), _cert(client_cert))
    assert base64.b64decode(user["user"]["client-key-data"]) == key_pem
    assert context["context"] == {"cluster": "prod", "user": "admin"}
    assert config["current-context"] == context["name"]


def test_kubeconfig_adds_https_to_a_bare_endpoint(ca):
    config = yaml.safe_load(pki.kubeconfig("c", "api:6443", ca.cert_pem, b"c", b"k", user="me"))
    assert config["clusters"][0]["cluster"]["server"] == "https://api:6443"
    assert config["users"][0]["name"] == "me"


# --- kubeadm secrets ----------------------------------------------------------------------------


def test_bootstrap_token_format():
    tokens = {pki.bootstrap_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token), token


def test_certificate_key_format():
    keys = {pki.certificate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{64}", key), key


def test_discovery_hash_matches_the_ca_key(ca):
    # computed from the private key's public half, not from the certificate pki.py parses
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = "sha256:" + hashlib.sha256(spki).hexdigest()
    assert pki.discovery_hash(ca.cert_pem) == expected
    assert pki.discovery_hash(ca.cert_pem.decode()) == expected
    assert pki.discovery_hash(pki.new_ca("other").cert_pem) != expected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_discovery_hash_matches_the_kubeadm_documented_openssl_recipe(ca):
    # as in the kubeadm docs: openssl x509 -pubkey | openssl rsa -pubin -outform der | sha256sum
    pub = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout"],
        input=ca.cert_pem,
        capture_output=True,
        check=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=pub,
        capture_output=True,
        check=True,
    ).stdout
    assert pki.discovery_hash(ca.cert_pem) == "sha256:" + hashlib.sha256(der).hexdigest()
