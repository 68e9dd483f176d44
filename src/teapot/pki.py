"""Per-cluster certificate authorities, client certificates and kubeadm join secrets.

Every Teapot cluster has its own CA. Teapot keeps the CA key (encrypted at rest by the caller),
signs the certificate requests tenants send through the Magnum-compatible ``certificates`` API,
and hands the CA to the cluster's first control-plane host so that kubeadm uses it instead of
generating one. Everything here is pure: no files, no network, no global state.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_KEY_SIZE = 2048
_BACKDATE = datetime.timedelta(minutes=5)
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, repr=False)
class CA:
    """A certificate authority: its certificate and its (unencrypted PKCS8) private key, as PEM."""

    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        # Never show the key, not even a part of it.
        try:
            cert = x509.load_pem_x509_certificate(_as_bytes(self.cert_pem))
            return (
                f"CA(subject={cert.subject.rfc4514_string()!r}, "
                f"fingerprint={fingerprint(self.cert_pem)!r})"
            )
        except Exception:  # a repr must not raise
            return "CA(<unparseable certificate>)"

    __str__ = __repr__


# --- helpers ------------------------------------------------------------------------------------


def _as_bytes(pem: bytes | str) -> bytes:
    return pem.encode("ascii") if isinstance(pem, str) else pem


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be a positive integer, not {days!r}")


def _load_ca(ca: CA) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(_as_bytes(ca.cert_pem))
    except ValueError as exc:
        raise ValueError("the CA certificate is not valid PEM") from exc
    try:
        key = serialization.load_pem_private_key(_as_bytes(ca.key_pem), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("the CA key is not a valid unencrypted PEM private key") from exc
    if _spki_der(key.public_key()) != _spki_der(cert.public_key()):
        raise ValueError("the CA key does not match the CA certificate")
    return cert, key


def _leaf_builder(
    ca_cert: x509.Certificate,
    ca_key,
    subject: x509.Name,
    public_key,
    days: int,
    server: bool,
) -> x509.CertificateBuilder:
    now = _now()
    # A certificate never outlives the CA that signs it.
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


# --- certificate authorities --------------------------------------------------------------------


def new_ca(common_name: str, days: int = 3650) -> CA:
    """A new self-signed CA (RSA 2048, SHA-256) named CN=common_name, valid for ``days``."""
    if not common_name:
        raise ValueError("a CA needs a common name")
    _check_days(days)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def rotate(old: CA, common_name: str) -> CA:
    """A replacement CA with a new key. ``old`` is not used to sign it (no cross-signing): the
    caller must distribute the new CA (or a bundle of old and new) to the cluster itself."""
    del old  # kept in the signature so that a cross-signing rotation can replace this one
    return new_ca(common_name)


# --- issuing ------------------------------------------------------------------------------------


def sign_csr(ca: CA, csr_pem: bytes | str, days: int = 365) -> bytes:
    """Sign a PEM certificate signing request as a client certificate, Magnum style.

    The certificate gets exactly the subject the CSR asks for (e.g. CN=admin, O=system:masters),
    so deciding who may ask for what is the caller's job. Only the CSR's SubjectAlternativeName is
    copied; every other requested extension is ignored.
    """
    _check_days(days)
    ca_cert, ca_key = _load_ca(ca)
    try:
        csr = x509.load_pem_x509_csr(_as_bytes(csr_pem))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError("the CSR is not valid PEM") from exc
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # e.g. an unsupported key or signature algorithm
        raise ValueError("the CSR signature does not verify") from exc
    if not valid:
        raise ValueError("the CSR signature does not verify")
    if len(csr.subject) == 0:
        raise ValueError("the CSR has an empty subject")
    try:
        public_key = csr.public_key()
        extensions = csr.extensions
    except Exception as exc:
        raise ValueError("the CSR cannot be parsed") from exc

    builder = _leaf_builder(ca_cert, ca_key, csr.subject, public_key, days, server=False)
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        builder = builder.add_extension(san.value, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(
    ca: CA,
    common_name: str,
    organizations: Sequence[str] = (),
    days: int = 365,
    server_names: Sequence[str] = (),
) -> tuple[bytes, bytes]:
    """A new key and a certificate for it signed by ``ca``: (cert_pem, key_pem).

    The certificate is for client authentication; with ``server_names`` (DNS names and/or IP
    addresses) it is also for server authentication and carries them as SubjectAlternativeNames.
    """
    if not common_name:
        raise ValueError("a certificate needs a common name")
    if isinstance(organizations, str) or isinstance(server_names, str):
        raise TypeError("organizations and server_names are sequences of strings")
    _check_days(days)
    ca_cert, ca_key = _load_ca(ca)
    key = _new_key()
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    )
    builder = _leaf_builder(
        ca_cert, ca_key, subject, key.public_key(), days, server=bool(server_names)
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _general_name(name: str) -> x509.GeneralName:
    if not name:
        raise ValueError("an empty server name")
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# --- fingerprints and kubeconfig ----------------------------------------------------------------


def fingerprint(cert_pem: bytes | str) -> str:
    """The SHA-256 fingerprint of a PEM certificate (of its DER), as lowercase hex."""
    cert = x509.load_pem_x509_certificate(_as_bytes(cert_pem))
    return cert.fingerprint(hashes.SHA256()).hex()


def kubeconfig(
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    user: str = "admin",
) -> str:
    """A kubeconfig with one cluster, one user and one context (the current one), with every
    certificate and key embedded. ``server`` without a scheme gets ``https://``."""
    if "://" not in server:
        server = f"https://{server}"

    def b64(pem: bytes | str) -> str:
        return base64.b64encode(_as_bytes(pem)).decode("ascii")

    context = f"{user}@{cluster_name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


# --- kubeadm secrets ----------------------------------------------------------------------------


def bootstrap_token() -> str:
    """A kubeadm bootstrap token, ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    token_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
    token_secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    return f"{token_id}.{token_secret}"


def certificate_key() -> str:
    """A key for ``kubeadm init --upload-certs`` / ``--certificate-key``: 32 random bytes as hex."""
    return secrets.token_hex(32)


def discovery_hash(ca_pem: bytes | str) -> str:
    """kubeadm's ``--discovery-token-ca-cert-hash`` for a CA: the SHA-256 of its
    SubjectPublicKeyInfo, as ``sha256:<hex>``."""
    cert = x509.load_pem_x509_certificate(_as_bytes(ca_pem))
    return "sha256:" + hashlib.sha256(_spki_der(cert.public_key())).hexdigest()


__all__ = [
    "CA",
    "bootstrap_token",
    "certificate_key",
    "discovery_hash",
    "fingerprint",
    "issue",
    "kubeconfig",
    "new_ca",
    "rotate",
    "sign_csr",
]
