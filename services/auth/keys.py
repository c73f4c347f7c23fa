"""Token signing keys: a keyring on disk, with rotation.

Each key lives in ``<keys_dir>/<NNNN>.key`` (mode 0600) beside its self-signed certificate
``<NNNN>.crt``; the highest number signs. The registry trusts every certificate in the bundle
file (``auth.token.rootcertbundle``), so after ``rotate`` tokens signed by the old key keep
verifying until that key is removed. The registry reads the bundle at start: restart it after a
rotation or removal.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["Algorithm", "Keyring", "KeyringError", "SigningKey", "libtrust_key_id"]

Algorithm = Literal["ES256", "RS256"]
CERTIFICATE_YEARS = 10
RSA_BITS = 3072


class KeyringError(Exception):
    """A keyring operation that cannot be done; the message says why."""


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    number: int
    kid: str
    algorithm: Algorithm
    private_key: PrivateKey
    certificate_der: bytes

    @property
    def x5c(self) -> list[str]:
        """The JWT ``x5c`` header: the certificate, base64 DER (RFC 7515 §4.1.6)."""
        return [base64.b64encode(self.certificate_der).decode()]


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The libtrust key id registry 2.x matches ``kid`` against.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without padding, in 12
    groups of 4 joined by ``:`` (docker/libtrust util.go keyIDFromCryptoKey).
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


class Keyring:
    def __init__(self, directory: Path, bundle: Path) -> None:
        self.directory = directory
        self.bundle = bundle

    def keys(self) -> list[SigningKey]:
        """Every key, oldest first."""
        return [self._load(path) for path in sorted(self.directory.glob("*.key"))]

    def active(self) -> SigningKey:
        keys = self.keys()
        if not keys:
            raise KeyringError(f"no signing key in {self.directory}; run 'dockyard keys rotate'")
        return keys[-1]

    def rotate(self, algorithm: Algorithm, common_name: str) -> SigningKey:
        """Add a new key, which signs from now on; the bundle keeps the older certificates."""
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(path.stem) for path in self.directory.glob("*.key")]
        number = max(numbers, default=0) + 1
        key: PrivateKey = (
            ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        )
        certificate = _self_signed(key, common_name)
        key_path = self.directory / f"{number:04d}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        key_path.with_suffix(".crt").write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        self._write_bundle()
        return self._load(key_path)

    def remove(self, kid: str) -> None:
        """Drop a retired key; tokens it signed stop verifying once the registry restarts."""
        keys = self.keys()
        if keys and keys[-1].kid == kid:
            raise KeyringError(f"{kid} is the active key; rotate first, then remove it")
        self.discard(kid)

    def clear(self) -> None:
        """Drop every key (``init --force`` starts a new keyring)."""
        for path in self.directory.glob("*.key"):
            path.unlink()
            path.with_suffix(".crt").unlink(missing_ok=True)
        if self.directory.exists():
            self._write_bundle()

    def discard(self, kid: str) -> None:
        matching = [k for k in self.keys() if k.kid == kid]
        if not matching:
            raise KeyringError(f"no key with id {kid}")
        path = self.directory / f"{matching[0].number:04d}.key"
        path.unlink()
        path.with_suffix(".crt").unlink()
        self._write_bundle()

    def _write_bundle(self) -> None:
        pems = [path.read_bytes() for path in sorted(self.directory.glob("*.crt"))]
        self.bundle.write_bytes(b"".join(pems))

    def _load(self, key_path: Path) -> SigningKey:
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyringError(f"{key_path}: only EC P-256 and RSA keys can sign registry tokens")
        certificate = x509.load_pem_x509_certificate(key_path.with_suffix(".crt").read_bytes())
        algorithm: Algorithm = "ES256" if isinstance(private_key, ec.EllipticCurvePrivateKey) \
            else "RS256"
        return SigningKey(
            number=int(key_path.stem),
            kid=libtrust_key_id(private_key.public_key()),
            algorithm=algorithm,
            private_key=private_key,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        )


def _self_signed(key: PrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * CERTIFICATE_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
