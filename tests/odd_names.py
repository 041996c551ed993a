"""Keys with the characters S3-compatible servers spell differently in a listing, in every role a
key can have: a registered asset, the objects under it, an orphan, a prefix of no customer and an
object of no customer at the top level."""

from __future__ import annotations

from typing import Any

import psycopg

from storage_calc.model import RunReport

# Each kind of character, as the id `2/5/a{mark}b` and the top-level prefix `{mark}30/` hold it.
MARKS = {
    "plus": "+",
    "percent": "%",
    "space": " ",
    "encoded plus": "%2B",
    "non-ascii": "é",
    "not in xml": "\x01",
}


def asset_of(mark: str) -> str:
    return f"2/5/a{mark}b"


def artefacts(mark: str) -> dict[str, int]:
    asset = asset_of(mark)
    return {
        asset: 100,
        f"{asset}/full/max/default.jpg": 20,
        f"2/5/o{mark}p/x": 3,
        f"{mark}30/4/x": 4,
        f"a{mark}b.txt": 5,
    }


def thumbnails(mark: str) -> dict[str, int]:
    return {f"{asset_of(mark)}/open/100.jpg": 7}


# What the objects above add up to: the asset's own key and the objects under it, one orphan
# object of 3 bytes in customer 2, and two objects of 9 bytes outside every customer.
ASSET_FIGURES = (120, 7)
SPACE_FIGURES = (1, 120, 7)
ORPHAN = (1, 3)
OUTSIDE = (2, 9)


def attributed(mark: str) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int, int]]]:
    """What `figures` reads after a run of space 2/5 or more."""
    return {asset_of(mark): ASSET_FIGURES}, [SPACE_FIGURES]


def orphans_and_outside(report: RunReport) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (objects, bytes) of the orphans and of the keys outside every customer a run found."""
    return (
        (report.orphan_objects, report.orphan_bytes),
        (report.unattributed_objects, report.unattributed_bytes),
    )


def figures(conn: psycopg.Connection[Any]) -> tuple[dict[str, tuple[int, int]], list[Any]]:
    """Every asset's (size, thumbnail size) and the (images, size, thumbnails) of space 2/5."""
    assets = {
        row[0]: (row[1], row[2])
        for row in conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"')
    }
    space = conn.execute(
        'SELECT "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails" '
        'FROM "CustomerStorage" WHERE "Customer" = 2 AND "Space" = 5'
    ).fetchall()
    return assets, space


def flags_left(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute('SELECT count(*) FROM "ImageStorage" WHERE "CheckingInProgress"').fetchone()
    assert row is not None
    return int(row[0])
