"""The platform's "Customers" table as the tests make it, and the credentials of its keys."""

from __future__ import annotations

import base64
from typing import Any

import psycopg

from storage_calc import auth

SALT = "pepper"
# The platform's table, with the columns `serve` reads as its migrations make them.
CUSTOMERS_DDL = """
CREATE TABLE "Customers" (
    "Id" integer PRIMARY KEY,
    "Name" character varying(500) NOT NULL,
    "Keys" character varying(1000) NOT NULL,
    "Administrator" boolean NOT NULL
)
"""


def basic(key: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def platform(key: str, customer: int) -> dict[str, str]:
    """The header of `key` of `customer` with the secret the platform derives for it."""
    return basic(key, auth.platform_secret(SALT, customer, key))


def add_customers_table(conn: psycopg.Connection[Any]) -> None:
    """Customer 1 an administrator with key `kadmin`, 2 with `k2a` and `k2b`, 3 with `k3`."""
    conn.execute(CUSTOMERS_DDL)
    conn.execute(
        """INSERT INTO "Customers" VALUES
        (1, 'admin', 'kadmin', true), (2, 'two', 'k2a,k2b', false), (3, 'three', 'k3', false)"""
    )
