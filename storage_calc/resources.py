"""The documented resources read from the database: one lookup for `show` and for `serve`.
Each reads the layout of the platform's tables first, so it follows the platform's migrations."""

from __future__ import annotations

from typing import Any

from storage_calc import db, jsonld


def customer_storage(
    conn: db.Connection, customer: int, space: int | None, base_url: str
) -> dict[str, Any] | None:
    """The CustomerStorage of a customer (`space` None: its customer-level row, wherever the
    database's layout keeps it) or of one of its spaces, or None."""
    row = db.customer_storage(conn, db.detect_layout(conn), customer, space)
    return None if row is None else jsonld.customer_storage(row, base_url)


def image_storage(
    conn: db.Connection, customer: int, space: int, asset: str, base_url: str
) -> dict[str, Any] | None:
    """The ImageStorage of an asset, or None."""
    layout = db.detect_layout(conn)
    row = db.image_storage(conn, layout, customer, space, f"{customer}/{space}/{asset}")
    return None if row is None else jsonld.image_storage(row, base_url)


def storage_policy(conn: db.Connection, policy: str, base_url: str) -> dict[str, Any] | None:
    """A StoragePolicy, or None."""
    row = db.storage_policy(conn, policy)
    return None if row is None else jsonld.storage_policy(row, base_url)
