"""``pacsnode tls init``: a private CA and certificates for a test or lab setup.

One CA signs a server certificate (for the TLS DIMSE port and HTTPS) and a client
certificate (for pacsnode as SCU, or a modality). A production site uses certificates
from its own CA instead; the settings are the same.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pacsnode.cli.common import app, console

tls = typer.Typer(help="Certificates for DICOM TLS and HTTPS.", no_args_is_help=True)
app.add_typer(tls, name="tls")

Key = rsa.RSAPrivateKey
KEY_BITS = 2048
"""RSA, because the TLS 1.2 suites of the DICOM BCP 195 profiles are ECDHE_RSA and
DHE_RSA ones; 2048 bits is BCP 195's minimum."""


def _new_key() -> Key:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: Key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pacsnode"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, key: Key, days: int) -> x509.CertificateBuilder:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def make_ca(common_name: str, days: int) -> Issued:
    key = _new_key()
    certificate = (
        _builder(common_name, _name(common_name), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def issue(ca: Issued, common_name: str, days: int, hostnames: list[str] | None = None) -> Issued:
    """A leaf certificate: for a node when ``hostnames`` are given, else for a client.

    A node's certificate serves for both ends, as pacsnode also calls other nodes.
    """
    key = _new_key()
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hostnames:
        usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        _builder(common_name, ca.certificate.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if hostnames:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(hostnames)), False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _alt_names(hostnames: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys(hostnames):  # unique, in order
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _write(folder: Path, stem: str, issued: Issued) -> None:
    """The certificate as ``stem.pem``; the key as ``stem.key``, readable by us only."""
    (folder / f"{stem}.pem").write_bytes(
        issued.certificate.public_bytes(serialization.Encoding.PEM)
    )
    key_bytes = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = folder / f"{stem}.key"
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_bytes)
    key_path.chmod(0o600)  # also when the file existed with wider permissions


def init_certificates(folder: Path, hostnames: list[str], days: int) -> None:
    """ca, server and client certificates and keys in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca("pacsnode test CA", days)
    server_names = ["localhost", "127.0.0.1", *hostnames]
    _write(folder, "ca", ca)
    _write(folder, "server", issue(ca, (hostnames or ["localhost"])[0], days, server_names))
    _write(folder, "client", issue(ca, "pacsnode client", days))


@tls.command("init")
def init(
    outdir: Annotated[Path, typer.Argument(help="Folder for the certificates and keys.")],
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="Another name or address of the server (repeatable)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="How long the certificates are valid.")] = 825,
) -> None:
    """Create a private CA and a server and a client certificate signed by it."""
    if (outdir / "ca.key").exists():
        console.print(f"[red]{outdir / 'ca.key'} exists; choose an empty folder[/red]")
        raise typer.Exit(1)
    init_certificates(outdir, hostname or [], days)
    folder = outdir.resolve()
    typer.echo(f"# certificates in {folder}; for the [server] section:")
    typer.echo(f'tls_certificate = "{folder / "server.pem"}"')
    typer.echo(f'tls_private_key = "{folder / "server.key"}"')
    typer.echo(f'tls_ca_certificates = "{folder / "ca.pem"}"')
    typer.echo("tls_port = 2762")
    typer.echo("http_tls = true")
    typer.echo("# a client (or pacsnode as SCU elsewhere) uses client.pem and client.key")
