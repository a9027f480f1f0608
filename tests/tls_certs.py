"""Certificates for the TLS tests (self-signed, or signed by a test CA), and what a TLS port
presents; an NSS database trusting a test CA, for a browser run with that HOME."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A root CA (CN ``name``) and its key, as PEM files: what a school installs as trusted."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(folder, name, cert, key)


def make_cert(folder: Path, name: str, hosts: list[str],
              ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    """A certificate (CN ``name``, SAN ``hosts``: IP or DNS) and its key, as PEM files;
    self-signed, or a server certificate signed by ``ca`` (its cert and key files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    if ca is None:
        cert = builder.issuer_name(subject).sign(key, hashes.SHA256())
    else:
        ca_cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
        ca_key = serialization.load_pem_private_key(ca[1].read_bytes(), password=None)
        cert = (
            builder.issuer_name(ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
    return _write(folder, name, cert, key)


def _write(folder: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def nss_home(folder: Path, ca_cert: Path, nickname: str = "testca") -> Path:
    """A HOME whose NSS database ($HOME/.pki/nssdb) trusts ``ca_cert`` to issue server
    certificates: Chromium on Linux reads it at start, as it does a school's own root.
    Needs certutil (Debian libnss3-tools)."""
    home = folder / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    for args in (["-N", "--empty-password"],
                 ["-A", "-t", "C,,", "-n", nickname, "-i", str(ca_cert)]):
        subprocess.run(["certutil", "-d", f"sql:{db}", *args], check=True, env=env,
                       capture_output=True, timeout=20)
    return home


def served_common_name(host: str, port: int, timeout: float = 3.0) -> str:
    """The CN of the certificate a new TLS connection to host:port is given."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def insecure_client_context() -> ssl.SSLContext:
    """A client context that accepts the tests' self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
