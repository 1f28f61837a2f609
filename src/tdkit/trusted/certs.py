"""The course's certificates for Dask over mutual TLS (``tdkit certs DIR NAME...``).

A Dask scheduler runs whatever its clients send on its workers: with mutual TLS, only a machine
holding a certificate signed by the course's own CA can talk to it (client, worker or
scheduler), and the traffic (notebooks, artifacts) is encrypted. ``DIR/ca/`` holds the CA, made
once (``ca-key.pem`` never leaves the instructor's machine); ``DIR/NAME/`` holds what machine
NAME needs (``ca.pem``, ``cert.pem``, ``key.pem``): copy that folder to it, and nothing else.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tdkit.core.errors import TdkitError

CA_FOLDER = "ca"
VALID_DAYS = 400  # one academic year and a margin; run `tdkit certs` again to renew
MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class MachineFiles:
    """What one machine of the cluster needs: the course CA, its certificate and its key."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"

    def check(self) -> MachineFiles:
        """These files, or a TdkitError that says how to make them."""
        missing = [p.name for p in (self.ca, self.cert, self.key) if not p.is_file()]
        if missing:
            raise TdkitError(
                f"{self.folder} lacks {', '.join(missing)}: make this machine's certificates with "
                f"'tdkit certs DIR {self.folder.name}' on the instructor's machine and copy DIR/{self.folder.name}/ here."
            )
        return self


@dataclass
class CertsResult:
    ca_folder: Path
    ca_created: bool
    machines: list[MachineFiles]


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600 if private else 0o644)


def make_certificates(directory: Path, names: Sequence[str], days: int = VALID_DAYS) -> CertsResult:
    """The course CA in ``directory/ca/`` (made if absent), and ``directory/NAME/`` for each name."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as error:
        raise TdkitError(
            "Making certificates needs 'cryptography': pip install 'tdkit[scale]'."
        ) from error
    bad = [n for n in names if not MACHINE_NAME.fullmatch(n) or n == CA_FOLDER]
    if bad or not names:
        raise TdkitError(
            f"Give machine names made of letters, digits, '.', '_' or '-' (not '{CA_FOLDER}'): {bad or 'none given'}."
        )
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_folder = directory / CA_FOLDER
    ca_key_path, ca_cert_path = ca_folder / "ca-key.pem", ca_folder / "ca.pem"
    created = not (ca_key_path.is_file() and ca_cert_path.is_file())
    if created:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tdkit course CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .sign(ca_key, hashes.SHA256())
        )
        _write(
            ca_key_path,
            ca_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            private=True,
        )
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    else:
        loaded_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded_key, ec.EllipticCurvePrivateKey):
            raise TdkitError(
                f"{ca_key_path} is not a key made by 'tdkit certs': move {ca_folder} away and run it again."
            )
        ca_key, ca_cert = loaded_key, x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    machines = []
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files = MachineFiles(directory / name)
        _write(
            files.key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            private=True,
        )
        _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
        _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        machines.append(files)
    return CertsResult(ca_folder, created, machines)
