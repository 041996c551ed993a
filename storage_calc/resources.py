"""The documented resources read from the database: one lookup for `show` and for `serve`."""

from __future__ import annotations

from typing import Any

from storage_calc import db, jsonld


def customer_storage(
    conn: db.Connection, customer: int, space: int, base_url: str
) -> dict[str, Any] | None:
    """The CustomerStorage of a customer (space 0) or of one of its spaces, or None."""
    row = db.customer_storage(conn, customer, space)
    return None if row is None else jsonld.customer_storage(row, base_url)


def image_storage(
    conn: db.Connection, customer: int, space: int, asset: str, base_url: str
) -> dict[str, Any] | None:
    """The ImageStorage of an asset, or None."""
    row = db.image_storage(conn, customer, space, f"{customer}/{space}/{asset}")
    return None if row is None else jsonld.image_storage(row, base_url)


def storage_policy(conn: db.Connection, policy: str, base_url: str) -> dict[str, Any] | None:
    """A StoragePolicy, or None."""
    row = db.storage_policy(conn, policy)
    return None if row is None else jsonld.storage_policy(row, base_url)
