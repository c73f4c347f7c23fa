"""Token signing keys: the libtrust key id, the certificate bundle, rotation and removal."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.auth.keys import Keyring, KeyringError, SigningKey, libtrust_key_id
from services.auth.tokens import Grant, issue_token

# libtrust: 12 groups of 4 base32 characters (RFC 4648 alphabet), joined by ":"
KID = re.compile(r"[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}")

# The signing key of the schema 1 example in distribution docs/spec/manifest-v2-1.md, whose
# JWK carries the kid libtrust computed for it.
SPEC_JWK = {
    "crv": "P-256",
    "kid": "OD6I:6DRK:JXEJ:KBM4:255X:NSAA:MUSF:E4VM:ZI6W:CUN2:L4Z6:LSF4",
    "kty": "EC",
    "x": "3gAwX48IQ5oaYQAYSxor6rYYc_6yjuLCjtQ9LUakg4A",
    "y": "t72ge6kIA1XOjqjVoEOiPPAURltJFBMGDSQvEGVB010",
}


def b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def key_id_by_the_spec(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """PROTOCOLS.md: SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 without
    padding, 12 groups of 4 joined by ":"."""
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode()
    assert "=" not in encoded  # 240 bits are exactly 48 base32 characters
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys", tmp_path / "token-bundle.crt")


def bundle_certificates(keyring: Keyring) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(keyring.bundle.read_bytes())


def kids(keyring: Keyring) -> list[str]:
    keys = keyring.keys()
    return [key.kid for key in keys]


def certificate_of(key: SigningKey) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(key.x5c[0]))


def signed_token(key: SigningKey) -> str:
    return issue_token(key, issuer="dockyard", audience="registry", subject="alice",
                       grants=[Grant("repository", "a/b", frozenset({"pull"}))],
                       ttl=300, now=int(time.time())).token


def verifies_with(token: str, certificate: x509.Certificate) -> bool:
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    try:
        jwt.decode(token, public_key, algorithms=["ES256", "RS256"], audience="registry")
    except jwt.InvalidTokenError:
        return False
    return True


# the key id --------------------------------------------------------------------------------

def test_the_key_id_of_the_distribution_spec_example():
    public_key = ec.EllipticCurvePublicNumbers(
        b64url_int(SPEC_JWK["x"]), b64url_int(SPEC_JWK["y"]), ec.SECP256R1()).public_key()

    assert libtrust_key_id(public_key) == SPEC_JWK["kid"]
    assert key_id_by_the_spec(public_key) == SPEC_JWK["kid"]


@pytest.mark.parametrize("make", [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
], ids=["P-256", "RSA"])
def test_the_key_id_follows_the_spec(make):
    public_key = make().public_key()
    kid = libtrust_key_id(public_key)

    assert KID.fullmatch(kid), kid
    assert kid == key_id_by_the_spec(public_key)


def test_different_keys_have_different_ids():
    ids = {libtrust_key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
           for _ in range(20)}
    assert len(ids) == 20


# the keyring -------------------------------------------------------------------------------

def test_an_empty_keyring_has_no_active_key(keyring):
    assert keyring.keys() == []
    with pytest.raises(KeyringError, match="keys rotate"):
        keyring.active()


def test_the_first_key(keyring):
    key = keyring.rotate("ES256", common_name="dockyard")

    assert key.algorithm == "ES256"
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    assert key.kid == key_id_by_the_spec(key.private_key.public_key())
    assert keyring.active().kid == key.kid
    # the private key is readable by its owner only
    key_file = next(keyring.directory.glob("*.key"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the bundle holds its certificate, which x5c carries too
    certificate = certificate_of(key)
    assert bundle_certificates(keyring) == [certificate]
    assert certificate.public_key() == key.private_key.public_key()
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dockyard"
    # self-signed: the registry trusts it as a root of its bundle
    assert certificate.subject == certificate.issuer
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert verifies_with(signed_token(key), bundle_certificates(keyring)[0])


def test_x5c_is_standard_base64_der(keyring):
    key = keyring.rotate("ES256", common_name="dockyard")
    (value,) = key.x5c
    # RFC 7515 §4.1.6: base64, not base64url, of the DER certificate
    assert base64.b64encode(base64.b64decode(value, validate=True)).decode() == value
    assert base64.b64decode(value) == key.certificate_der


def test_rotation_keeps_the_old_certificates_and_the_new_key_signs(keyring):
    first = keyring.rotate("ES256", common_name="dockyard")
    old_token = signed_token(first)
    second = keyring.rotate("ES256", common_name="dockyard")

    assert second.kid != first.kid
    assert keyring.active().kid == second.kid
    assert kids(keyring) == [first.kid, second.kid]
    bundle = bundle_certificates(keyring)
    assert bundle == [certificate_of(first), certificate_of(second)]
    # tokens signed before the rotation still verify against the bundle; new ones use the new key
    assert any(verifies_with(old_token, certificate) for certificate in bundle)
    new_token = signed_token(keyring.active())
    assert jwt.get_unverified_header(new_token)["kid"] == second.kid
    assert verifies_with(new_token, certificate_of(second))
    assert not verifies_with(new_token, certificate_of(first))


def test_a_keyring_reads_back_what_it_wrote(keyring, tmp_path):
    keyring.rotate("ES256", common_name="dockyard")
    keyring.rotate("ES256", common_name="dockyard")
    again = Keyring(tmp_path / "keys", tmp_path / "token-bundle.crt")
    assert kids(again) == kids(keyring)
    assert again.active().certificate_der == keyring.active().certificate_der


def test_the_active_key_cannot_be_removed(keyring):
    first = keyring.rotate("ES256", common_name="dockyard")
    with pytest.raises(KeyringError, match="active key"):
        keyring.remove(first.kid)
    second = keyring.rotate("ES256", common_name="dockyard")
    with pytest.raises(KeyringError, match="active key"):
        keyring.remove(second.kid)
    assert len(bundle_certificates(keyring)) == 2


def test_removing_a_retired_key_drops_its_certificate(keyring):
    first = keyring.rotate("ES256", common_name="dockyard")
    old_token = signed_token(first)
    second = keyring.rotate("ES256", common_name="dockyard")

    keyring.remove(first.kid)

    assert kids(keyring) == [second.kid]
    assert keyring.active().kid == second.kid
    assert bundle_certificates(keyring) == [certificate_of(second)]
    assert not any(verifies_with(old_token, c) for c in bundle_certificates(keyring))
    with pytest.raises(KeyringError, match="no key"):
        keyring.remove(first.kid)


def test_removing_an_unknown_key(keyring):
    keyring.rotate("ES256", common_name="dockyard")
    with pytest.raises(KeyringError, match="no key with id"):
        keyring.remove("AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA")


def test_rs256_keys(keyring):
    key = keyring.rotate("RS256", common_name="dockyard")

    assert key.algorithm == "RS256"
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    assert key.private_key.key_size >= 2048
    assert KID.fullmatch(key.kid)
    assert key.kid == key_id_by_the_spec(key.private_key.public_key())
    token = signed_token(key)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == key.kid
    assert header["x5c"] == key.x5c
    assert verifies_with(token, bundle_certificates(keyring)[0])


def test_rotating_from_es256_to_rs256(keyring):
    first = keyring.rotate("ES256", common_name="dockyard")
    second = keyring.rotate("RS256", common_name="dockyard")
    keys = keyring.keys()
    assert [key.algorithm for key in keys] == ["ES256", "RS256"]
    assert keyring.active().kid == second.kid
    bundle = bundle_certificates(keyring)
    assert verifies_with(signed_token(first), bundle[0])
    assert verifies_with(signed_token(second), bundle[1])


def test_a_key_of_another_kind_is_refused(keyring):
    keyring.rotate("ES256", common_name="dockyard")
    foreign = keyring.directory / "0002.key"
    foreign.write_bytes(b"-----BEGIN PRIVATE KEY-----\n"
                        b"MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
                        b"-----END PRIVATE KEY-----\n")  # an Ed25519 key (RFC 8410 example)
    foreign.with_suffix(".crt").write_bytes(next(keyring.directory.glob("*.crt")).read_bytes())
    with pytest.raises(KeyringError, match="only EC P-256 and RSA"):
        keyring.active()
