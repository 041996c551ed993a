"""Who may read what through `storage-calc serve`: the platform's API key scheme.

HTTP Basic with the realm `DLCS-API`. A key belongs to one customer; its secret is never stored.
Against the platform's `"Customers"` table the secret is the lowercase hex SHA-256 of
`ApiSalt + customer id + key`, so the keys and secrets the platform's customers already hold
work unchanged. For a database without that table the operator names a keys file, which holds
the SHA-256 of each secret. A key is looked up first among the keys of the customer in the
path, then among the administrators' keys: a customer's key opens its own paths, an
administrator's key every path, and nothing else opens anything.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from base64 import b64decode
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from storage_calc import db
from storage_calc.errors import ConfigError
from storage_calc.keys import INT4_MAX, parse_int

REALM = "DLCS-API"
CHALLENGE = f'Basic realm="{REALM}"'
_HEX64 = re.compile(r"[0-9a-f]{64}")
Connect = Callable[[], AbstractContextManager[db.Connection]]


def platform_secret(salt: str, customer: int, key: str) -> str:
    """The secret the platform hands out with `key`: sha256(salt + customer + key), hex."""
    return hashlib.sha256(f"{salt}{customer}{key}".encode()).hexdigest()


def secret_digest(secret: str) -> str:
    """What a keys file stores of a secret. Secrets are 256 random bits, so one SHA-256 is
    as hard to reverse as the secret is to guess; no slow hash is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(given: str, expected: str) -> bool:
    """Compares in constant time (bytes: `compare_digest` refuses non-ASCII text)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The key and secret of an `Authorization: Basic` header, as the platform reads it: the
    scheme word exactly `Basic`, strict base64 of UTF-8, exactly two non-empty parts around
    one `:`. None for anything else."""
    if header is None or not header.startswith("Basic "):
        return None
    try:
        text = b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True)
class KeyEntry:
    """One line of a keys file."""

    customer: int
    key: str
    digest: str = field(repr=False)
    admin: bool = False


@dataclass(frozen=True)
class KeysFile:
    """Keys from a file the operator keeps: `CUSTOMER KEY SHA256-OF-SECRET [admin]` a line."""

    entries: tuple[KeyEntry, ...]

    def holder(
        self, key: str, secret: str, customer: int | None, connection: Connect
    ) -> int | None:
        """The customer whose key and secret these are, if they may read `customer`'s paths
        (None: a path of no customer, for administrators only)."""
        entry = next(iter(self.candidates(key, customer)), None)
        if entry is None:
            return None
        return entry.customer if same(secret_digest(secret), entry.digest) else None

    def candidates(self, key: str, customer: int | None) -> Iterable[KeyEntry]:
        yield from (e for e in self.entries if e.customer == customer and e.key == key)
        yield from (e for e in self.entries if e.admin and e.key == key)


@dataclass(frozen=True)
class CustomersTable:
    """Keys from the platform's `"Customers"` table, secrets derived with its `ApiSalt`."""

    salt: str = field(repr=False)

    def holder(
        self, key: str, secret: str, customer: int | None, connection: Connect
    ) -> int | None:
        """As KeysFile.holder, against the table read through `connection`."""
        with connection() as conn:
            owner = key_holder(conn, key, customer)
        if owner is None:
            return None
        return owner if same(secret, platform_secret(self.salt, owner, key)) else None


KeyStore = KeysFile | CustomersTable


def has_customers_table(conn: db.Connection) -> bool:
    with db.translated('looking for the "Customers" table failed'):
        row = conn.execute(db.queries()["has_customers_table"]).fetchone()
    return bool(row and row[0])


def key_holder(conn: db.Connection, key: str, customer: int | None) -> int | None:
    """The customer holding `key`: the path's customer first, then an administrator."""
    with db.translated('reading "Customers" failed'):
        if customer is not None:
            row = conn.execute(
                db.queries()["customer_key_holder"], {"customer": customer, "key": key}
            ).fetchone()
            if row is not None:
                return int(row[0])
        row = conn.execute(db.queries()["admin_key_holder"], {"key": key}).fetchone()
    return None if row is None else int(row[0])


def read_keys_file(path: Path) -> KeysFile:
    """The keys of the file at `path`; `#` starts a comment. A ConfigError names the line."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the keys file {path}: {exc}") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        customer = parse_int(words[0])
        valid = (
            len(words) in (3, 4)
            and customer is not None
            and ":" not in words[1]
            and _HEX64.fullmatch(words[2]) is not None
            and words[3:] in ([], ["admin"])
        )
        if not valid or customer is None:
            raise ConfigError(
                f"{path}:{number}: expected CUSTOMER KEY SHA256-OF-SECRET [admin], "
                f"customer 0 to {INT4_MAX}, the digest in 64 lowercase hex digits"
            )
        entries.append(KeyEntry(customer, words[1], words[2], words[3:] == ["admin"]))
    return KeysFile(tuple(entries))


def new_key(customer: int, admin: bool) -> tuple[str, str, str]:
    """A new key and secret for `customer`, and the keys file's line for them."""
    key, secret = secrets.token_hex(16), secrets.token_hex(32)
    line = f"{customer} {key} {secret_digest(secret)}" + (" admin" if admin else "")
    return key, secret, line


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose(
    customers_table: Callable[[], bool],
    keys_file: Path | None,
    salt: str | None,
    public: bool,
    host: str,
) -> KeyStore | None:
    """Where `serve` finds its keys (None: it answers everyone), or a ConfigError saying why
    it must not start. `customers_table` says whether the database has the platform's table;
    it is asked only when neither --no-auth nor a keys file settles it."""
    if public:
        if keys_file is not None or salt:
            raise ConfigError("--no-auth serves the figures to everyone: give it no keys")
        return None
    if keys_file is not None:
        if salt:
            raise ConfigError("give either --keys-file or --api-salt, not both")
        return read_keys_file(keys_file)
    if salt:
        if not customers_table():
            raise ConfigError(
                'the database has no "Customers" table to check keys against: '
                "name a keys file with --keys-file"
            )
        return CustomersTable(salt)
    if customers_table():
        raise ConfigError(
            'the database has the platform\'s "Customers" table: give its ApiSalt with '
            "STORAGE_CALC_API_SALT (or --api-salt), or serve the figures to everyone with --no-auth"
        )
    if is_loopback(host):
        return None
    raise ConfigError(
        f"refusing to serve every customer's figures on {host} to anyone: name a keys file "
        "with --keys-file, or say the figures are public with --no-auth"
    )
