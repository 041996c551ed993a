"""The key grammar of CONTRACT §2.1: which asset, if any, owns an object key.

An attributable key, after its location's prefix, is `{customer}/{space}/{asset}` or
`{customer}/{space}/{asset}/{rest}`. Customer and space are canonical decimal integers (no sign,
no leading zeros, within PostgreSQL `int`), and the asset is the rest of the third segment, raw,
never URL-decoded. Space 0 holds assets only where the layout has a stub space (the current
layout); in the seed layout it is the customer-level row and its keys are unattributed.
"""

from __future__ import annotations

from storage_calc.model import AssetKey

INT4_MAX = 2**31 - 1


def parse_int(text: str) -> int | None:
    """`text` as a non-negative `int4` written canonically, else None."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value <= INT4_MAX else None


def scope_of(key: str) -> tuple[int, int | None] | None:
    """The (customer, space) whose prefix holds `key` (relative to its location's prefix),
    space None for a key under the customer's prefix but in no space; None for a key under no
    customer. What S3 bills is attributed so, registered asset or not (`billable`)."""
    return _scope(key.split("/", 2))


def _scope(parts: list[str]) -> tuple[int, int | None] | None:
    """`scope_of` a key split at its first two slashes or more."""
    customer = parse_int(parts[0]) if len(parts) > 1 else None
    if customer is None:
        return None
    return customer, parse_int(parts[1]) if len(parts) > 2 else None


def owner_id(key: str, stub_space: bool = False) -> str | None:
    """The id (`c/s/asset`) of the asset that would own `key`, or None if it is unattributable.

    `key` is relative to its location's prefix. The id is always a prefix of the key, so an
    asset `foo` owns `2/5/foo` and `2/5/foo/...` but never `2/5/foo-2` or `2/5/foobar`. Keys in
    space 0 are attributable only with `stub_space`. A key with a NUL character is
    unattributable: PostgreSQL text cannot hold it, so no registered asset can own it and it
    cannot be stored as an example.
    """
    if "\x00" in key:
        return None
    parts = key.split("/", 3)
    scope = _scope(parts)
    if scope is None or scope[1] is None or (scope[1] == 0 and not stub_space) or not parts[2]:
        return None
    return f"{parts[0]}/{parts[1]}/{parts[2]}"


def parse_key(key: str, stub_space: bool = False) -> AssetKey | None:
    """The `AssetKey` that would own `key` (relative to its location's prefix), or None."""
    asset_id = owner_id(key, stub_space)
    if asset_id is None:
        return None
    customer, space, asset = asset_id.split("/", 2)
    return AssetKey(int(customer), int(space), asset)


def parse_asset_id(text: str) -> AssetKey | None:
    """An asset id as operators write it (`C/S/ID`, the asset without `/`), or None. Space 0 is
    accepted here; whether the database's layout has a stub space is checked where it is read."""
    key = parse_key(text, stub_space=True)
    if key is None or key.id != text:
        return None
    return key


def customer_prefix(customer: int) -> str:
    """The prefix of everything `customer` stores: `1/`, never `1`, which would list `10`."""
    return f"{customer}/"


def space_prefix(customer: int, space: int) -> str:
    return f"{customer}/{space}/"


def scope_prefix(customer: int, space: int | None) -> str:
    """The prefix of `customer`'s space, or of the whole customer where `space` is None."""
    return customer_prefix(customer) if space is None else space_prefix(customer, space)


ADJUNCTS = "/adjuncts/"


def is_adjunct(key: str, asset_id: str) -> bool:
    """Whether `key` (relative to its location's prefix), owned by `asset_id`, is one of the
    asset's adjuncts: a key under `{id}/adjuncts/`."""
    return key.startswith(ADJUNCTS, len(asset_id))
