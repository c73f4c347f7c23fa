"""A real OpenLDAP server (Debian ``slapd``) for tests, with its own config, data and TLS cert.

``SlapdProcess`` writes a ``slapd.conf`` (mdb backend, the ``memberof`` overlay so users carry
``memberOf``), a self-signed certificate for 127.0.0.1 (StartTLS on the ``ldap://`` port, and an
``ldaps://`` port), starts ``slapd -d 0`` on free loopback ports and loads ``BASE_LDIF`` with
``ldapadd`` (through the server, so the overlay sees the groups; ``slapadd`` would bypass it).

The tree: ``ou=people`` (alice, bob, carol, "mallory*"), ``ou=groups`` with a groupOfNames
(developers), a groupOfUniqueNames (operators) and an admin group, and a service account
``cn=reader`` that may search but not read passwords.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.peer import PeerProcess
from tests.support.registry import free_port

__all__ = [
    "BASE_DN",
    "BASE_LDIF",
    "READER_DN",
    "READER_PASSWORD",
    "ROOT_DN",
    "ROOT_PASSWORD",
    "SlapdProcess",
    "require_slapd",
]

SLAPD = "/usr/sbin/slapd"
LDAPADD = "/usr/bin/ldapadd"
BASE_DN = "dc=dockyard,dc=test"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-secret"
READER_DN = f"cn=reader,{BASE_DN}"
READER_PASSWORD = "reader-secret"

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCertificateFile {dir}/cert.pem
TLSCertificateKeyFile {dir}/key.pem

database mdb
suffix "{base}"
rootdn "{root}"
rootpw {root_password}
directory {dir}/db
maxsize 104857600
index objectClass eq
index uid eq
index member eq
index uniqueMember eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""

BASE_LDIF = f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
dc: dockyard
o: Dockyard tests

dn: {READER_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {READER_PASSWORD}

dn: ou=people,{BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE_DN}
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,{BASE_DN}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Liddell
mail: alice@dockyard.test
userPassword: alice-password

dn: uid=bob,ou=people,{BASE_DN}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
mail: bob@dockyard.test
userPassword: bob-password

dn: uid=carol,ou=people,{BASE_DN}
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Admin
mail: carol@dockyard.test
userPassword: carol-password

dn: cn=developers,ou=groups,{BASE_DN}
objectClass: groupOfNames
cn: developers
member: uid=alice,ou=people,{BASE_DN}
member: uid=bob,ou=people,{BASE_DN}

dn: cn=operators,ou=groups,{BASE_DN}
objectClass: groupOfUniqueNames
cn: operators
uniqueMember: uid=bob,ou=people,{BASE_DN}

dn: cn=registry-admins,ou=groups,{BASE_DN}
objectClass: groupOfNames
cn: registry-admins
member: uid=carol,ou=people,{BASE_DN}
"""


def require_slapd() -> None:
    missing = [tool for tool in (SLAPD, LDAPADD) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian slapd and ldap-utils: make debs-test)")


class SlapdProcess(PeerProcess):
    """slapd on 127.0.0.1: ``url`` (ldap://, StartTLS-capable) and ``ldaps_url``."""

    name = "slapd"

    def __init__(self, workdir: Path | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="slapd-"))
        super().__init__(self.dir / "slapd.log")
        self.port = free_port()
        self.ldaps_port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.ca_file = self.dir / "cert.pem"

    def start(self, timeout: float = 15.0) -> None:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        if not self.ca_file.exists():
            _self_signed(self.dir)
        (self.dir / "slapd.conf").write_text(_CONF.format(
            dir=self.dir, base=BASE_DN, root=ROOT_DN, root_password=ROOT_PASSWORD))
        fresh = not any((self.dir / "db").iterdir())
        super().start(timeout)
        if fresh:
            self.add(BASE_LDIF)

    def command(self) -> list[str]:
        return [SLAPD, "-d", "0", "-f", str(self.dir / "slapd.conf"),
                "-h", f"{self.url}/ {self.ldaps_url}/"]

    def answers(self) -> bool:
        result = subprocess.run(
            ["/usr/bin/ldapsearch", "-x", "-H", self.url, "-s", "base", "-b", "",
             "(objectClass=*)"],
            capture_output=True, timeout=5, check=False)
        return result.returncode == 0

    def toml(self, extra: str = "") -> str:
        """Dockyard's ``[ldap]`` section for this server (search-then-bind as the reader, over
        StartTLS), with ``extra`` lines of that section after it."""
        return f"""
[ldap]
url = "{self.url}"
ca_file = "{self.ca_file}"
bind_dn = "{READER_DN}"
bind_password = "{READER_PASSWORD}"
user_base = "ou=people,{BASE_DN}"
sync_interval_seconds = 0
{extra}
"""

    def add(self, ldif: str) -> None:
        """Add entries as the root DN (through the server, so the overlays apply)."""
        self._ldap(LDAPADD, ldif)

    def modify(self, ldif: str) -> None:
        self._ldap("/usr/bin/ldapmodify", ldif)

    def _ldap(self, tool: str, ldif: str) -> None:
        result = subprocess.run(
            [tool, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif.encode(), capture_output=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr.decode()}")


def _self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "key.pem"
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_file.chmod(0o600)
