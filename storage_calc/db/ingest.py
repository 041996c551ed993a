"""Assets registered as the platform's ingest registers them: for the demo, the tests and the
benchmarks. The job itself only reads the registry."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from storage_calc.db.connection import (
    Connection,
    execute,
    server_now,
    translated,
)

# What the platform's ingest writes for a new image in the "Images" columns that are NOT NULL
# without a usable default, so that a registered asset looks like the platform's own.
IMAGE_COLUMNS: dict[str, object] = {
    "Origin": "https://example.org/origin.jpg",
    "Tags": "",
    "Roles": "",
    "PreservedUri": "",
    "Reference1": "",
    "Reference2": "",
    "Reference3": "",
    "NumberReference1": 0,
    "NumberReference2": 0,
    "NumberReference3": 0,
    "MaxUnauthorised": -1,
    "Width": 0,
    "Height": 0,
    "Error": "",
    "Batch": 0,
    "Ingesting": False,
    "Family": "I",
    "MediaType": "image/jpeg",
    "DeliveryChannels": "iiif-img,thumbs",
}


def register_assets(conn: Connection, asset_ids: Iterable[str]) -> int:
    """Registers assets (`c/s/asset`) in "Images" as the platform's ingest does, filling the
    columns this database's "Images" has; returns how many. For the demo, tests and
    benchmarks: the calculator itself only reads the registry."""
    with translated('registering assets in "Images" failed'), conn.transaction():
        present = {row[0] for row in execute(conn, "images_columns")}
        extra = {name: value for name, value in IMAGE_COLUMNS.items() if name in present}
        names = ["Id", "Customer", "Space", *(["Created"] if "Created" in present else []), *extra]
        statement = sql.SQL('COPY "Images" ({}) FROM STDIN').format(
            sql.SQL(", ").join(sql.Identifier(name) for name in names)
        )
        created = [server_now(conn)] if "Created" in present else []
        count = 0
        with conn.cursor().copy(statement) as copy:
            for asset_id in asset_ids:
                customer, space, _ = asset_id.split("/", 2)
                copy.write_row([asset_id, int(customer), int(space), *created, *extra.values()])
                count += 1
    return count


def registered(conn: Connection, asset_ids: Iterable[str]) -> set[str]:
    """Those of `asset_ids` registered in "Images"."""
    with translated('reading "Images" failed'):
        return {row[0] for row in execute(conn, "registered", ids=list(asset_ids))}
