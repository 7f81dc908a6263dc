"""Certificates, keys and tokens for a sandbox control plane.

A self-signed CA signs the apiserver's serving certificate (so clients verify TLS for real);
an RSA key pair signs service-account tokens; a static token file names one admin user in
``system:masters``. Everything is written to ``pki_dir`` with owner-only permissions.

Example::

    creds = write_credentials(Path("/tmp/sbx/pki"), service_ip="10.96.0.1")
    creds.admin_token
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_API_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]


@dataclass(frozen=True)
class Credentials:
    pki_dir: Path
    admin_token: str

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.pki_dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.pki_dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.pki_dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.pki_dir / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.pki_dir / "tokens.csv"

    # The kubelets' side: the CA key signs each kubelet's serving certificate; the apiserver
    # presents the kubelet client certificate when it calls a kubelet (pods/log).
    @property
    def ca_key(self) -> Path:
        return self.pki_dir / "ca.key"

    @property
    def kubelet_client_cert(self) -> Path:
        return self.pki_dir / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.pki_dir / "apiserver-kubelet-client.key"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def write_credentials(pki_dir: Path, service_ip: str) -> Credentials:
    """Create a fresh CA, apiserver certificate, service-account keys and admin token.

    ``service_ip`` is the first address of the Service range, the ``kubernetes`` Service that
    in-cluster clients dial: the serving certificate names it.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=365))

    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qaas-sandbox-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    server_key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in _API_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", service_ip)]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = _key()
    creds = Credentials(pki_dir, admin_token=secrets.token_hex(24))
    _write(creds.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(creds.serving_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(creds.serving_key, _pem_key(server_key))
    _write(creds.sa_key, _pem_key(sa_key))
    _write(
        creds.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    # Static token file format: token,user,uid,"group1,group2"
    _write(creds.token_file, f'{creds.admin_token},admin,admin,"system:masters"\n'.encode())
    _write(creds.ca_key, _pem_key(ca_key))
    client_cert, client_key = _issue(ca_cert, ca_key, KUBELET_CLIENT_NAME, [], client=True)
    _write(creds.kubelet_client_cert, client_cert)
    _write(creds.kubelet_client_key, client_key)
    return creds


# -- kubelets -------------------------------------------------------------------------------

# The apiserver's identity towards kubelets (kubeadm's name); a kubelet accepts only it.
KUBELET_CLIENT_NAME = "kube-apiserver-kubelet-client"


def _issue(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    name: str,
    sans: list[x509.GeneralName],
    *,
    client: bool,
) -> tuple[bytes, bytes]:
    """A certificate for ``name`` signed by the CA, as (cert PEM, key PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    key = _key()
    usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else (
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)  # fmt: skip
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_certificate(
    pki_dir: Path,
    name: str,
    out_dir: Path,
    *,
    ips: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[Path, Path]:
    """A certificate for ``name`` signed by the sandbox CA of ``pki_dir`` (a serving one with
    SANs ``name`` and ``ips``, or a ``client`` one), written to ``out_dir/<name>.crt|key``.

    The kubelets' serving certificates are made this way (name = node name, ips = node IP)."""
    creds = Credentials(pki_dir, admin_token="")
    ca_cert = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(creds.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    sans: list[x509.GeneralName] = []
    if not client:
        sans = [x509.DNSName(name), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    cert, key = _issue(ca_cert, ca_key, name, sans, client=client)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    _write(paths[0], cert)
    _write(paths[1], key)
    return paths
