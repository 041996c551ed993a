"""The objects of S3 Inventory reports, attributed to assets in DuckDB.

A listing attributes objects in Python as their pages stream in (`storage_calc.rollup`); a
report of billions of objects is read in columns instead, by DuckDB, the `inventory` extra
(`pip install 'storage-calc[inventory]'`), imported only here. The rules are those of
`storage_calc.keys` and `rollup.Tally`, written in SQL (sql/inventory.sql), and the tests hold
both to the same figures over the same objects:

- Every location's data files are read in one parallel scan that gives each current object
  its group: its owner (`c/s/asset`, as `keys.owner_id` reads it), the customer or space
  prefix above it for a key no asset owns, or a mark for a malformed row. The objects are
  written to partitions by group (Parquet files beside the reports), and each partition is
  summed in memory: ten million owners summed at once would take gigabytes of hash table, or
  spill it at a third of the speed. Whether an owner names an asset (the int4 range, space 0
  only with a stub space) is decided per group, not per object.
- The sums go into `assets` (customer, space, id, figures per kind, and the URL of the asset in
  the first location holding its keys, as the example of an orphan) and `others` (the objects
  no asset owns, per customer and space). DuckDB's memory is capped at `MEMORY_LIMIT`.
- A customer's registered assets come from PostgreSQL as CSV (no row passes through Python)
  and its staged figures go back the same way: `stage` joins them in DuckDB.

Only current versions count (`is_latest` and not `is_delete_marker`; a report of current
versions has neither field, and every row is current). Rows are checked as they are summed:
a row of another bucket, without a key, with a size that is not a number of bytes (only a
delete marker may lack one), or with a flag other than true or false is malformed, and the
first one is named in an InventoryError.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from storage_calc import sqlfiles
from storage_calc.config import Tuning
from storage_calc.errors import InventoryError
from storage_calc.model import Location, LocationKind, ScopeSums, SpaceOrphans, Spaces
from storage_calc.rollup import ORPHAN_ASSETS_COUNTED, ORPHAN_EXAMPLES
from storage_calc.sources.inventory import Report

MISSING_LIBRARY = "the inventory source needs: pip install 'storage-calc[inventory]'"
# DuckDB's memory for its tables and hash tables; beyond it they spill to its temporary
# directory. A higher cap makes runs no faster (benchmarks/README.md, the inventory source).
MEMORY_LIMIT = "500MB"

# The columns of each format as summed: a field the report lacks is what a report of current
# versions means by its absence. CSV holds text: sizes and flags are checked, keys decoded as
# `urllib.parse.unquote_plus` does (a `+` is a space, then `%XX` a byte).
PARQUET = """
    SELECT {file} AS file, bucket, key, size, CAST(size AS varchar) AS size_text,
           {is_latest} AS is_latest, {is_delete_marker} AS is_delete_marker,
           NULL AS is_latest_text, NULL AS is_delete_marker_text, {storage_class} AS storage_class,
           true AS valid
    FROM read_parquet($files_{i}, filename = {named})
"""
CSV = """
    SELECT {file} AS file, bucket, url_decode(replace(key, '+', ' ')) AS key,
           try_cast(size AS bigint) AS size, size AS size_text,
           {is_latest} AS is_latest, {is_delete_marker} AS is_delete_marker,
           {is_latest_text} AS is_latest_text, {is_delete_marker_text} AS is_delete_marker_text,
           {storage_class} AS storage_class,
           (size IS NULL OR regexp_full_match(size, '[0-9]{1,18}'))
           AND coalesce(lower({is_latest_text}) IN ('true', 'false'), true)
           AND coalesce(lower({is_delete_marker_text}) IN ('true', 'false'), true) AS valid
    FROM read_csv($files_{i}, header = false, auto_detect = false, delim = ',', quote = '"',
                  escape = '"', compression = 'gzip', filename = {named}, columns = $columns_{i})
"""
# Whether an owned key is one of its owner's adjuncts: `{owner}/adjuncts/...`.
ADJUNCT = "owned <> '' AND substr(rel, length(owned) + 1, 10) = '/adjuncts/'"
# A group's URL in location `{i}` (its bit `{bit}`), NULL where the group has no key there.
EXAMPLE = "CASE WHEN locations & {bit} <> 0 THEN getvariable('url_{i}') || g END"
CHECKED = """
    SELECT *, NOT valid OR bucket IS DISTINCT FROM getvariable('source_{i}') OR key IS NULL
              OR key = ''
              OR coalesce(size < 0, false) OR (size IS NULL AND NOT is_delete_marker) AS bad
    FROM ({rows})
"""


@cache
def statements() -> dict[str, str]:
    """The named statements of sql/inventory.sql, by name."""
    return sqlfiles.named_statements("inventory.sql")


def relation(source: ReportFiles, number: int, named: bool = False) -> tuple[str, dict[str, Any]]:
    """The relation of a source's rows, checked, for `{objects}` of sql/inventory.sql, and its
    parameters, named for the source's `number` (its variables are set by `InventorySums.add`);
    `named`: with the data file of each row, which only an error needs (a column of text for
    every row)."""
    report = source.report
    fields = set(report.fields)
    storage_class = "storage_class" if "storage_class" in fields else "NULL"
    file = {"named": str(named).lower(), "file": "filename" if named else "NULL"}
    params: dict[str, Any] = {f"files_{number}": [str(f) for f in source.files]}
    if report.file_format == "CSV":
        flags = {
            f"{name}_text": name if name in fields else "NULL"
            for name in ("is_latest", "is_delete_marker")
        }
        rows = sqlfiles.filled(
            CSV,
            is_latest=csv_flag("is_latest", fields, True),
            is_delete_marker=csv_flag("is_delete_marker", fields, False),
            storage_class=storage_class,
            i=number,
            **file,
            **flags,
        )
        params[f"columns_{number}"] = {name: "varchar" for name in report.fields}
    else:
        rows = sqlfiles.filled(
            PARQUET,
            is_latest="coalesce(is_latest, true)" if "is_latest" in fields else "true",
            is_delete_marker=(
                "coalesce(is_delete_marker, false)" if "is_delete_marker" in fields else "false"
            ),
            storage_class=storage_class,
            i=number,
            **file,
        )
    return sqlfiles.filled(CHECKED, rows=rows, i=number), params


def csv_flag(name: str, fields: set[str], default: bool) -> str:
    if name not in fields:
        return str(default).lower()
    return f"coalesce(lower({name}) = 'true', {str(default).lower()})"


@dataclass(frozen=True)
class ReportFiles:
    """One location's report and its data files, downloaded (ORC ones rewritten as Parquet)."""

    location: Location
    report: Report
    files: tuple[Path, ...]
    urls: tuple[str, ...]  # the s3:// URL of each file, to name in errors


def partitions(sources: list[ReportFiles], tuning: Tuning) -> int:
    """How many partitions the objects of `sources` are summed in: one per
    `tuning.partition_bytes` of their data files, so that each partition's groups fit in
    memory."""
    size = sum(path.stat().st_size for source in sources for path in source.files)
    return max(1, min(tuning.max_partitions, -(-size // tuning.partition_bytes)))


def connect(directory: Path) -> Any:
    """A DuckDB database in `directory`, which also holds what spills."""
    try:
        import duckdb
    except ImportError as exc:
        raise InventoryError(MISSING_LIBRARY) from exc
    conn = duckdb.connect()
    conn.execute("SET memory_limit = $limit", {"limit": MEMORY_LIMIT})
    conn.execute("SET temp_directory = $dir", {"dir": str(directory / "spill")})
    conn.execute("SET preserve_insertion_order = false")
    return conn


class InventorySums:
    """The objects of a run's reports, summed per asset, in a DuckDB database of its own.

    `add` each location's source, then `finish`, which reads them all in one scan; after that,
    `customers`, `outside`, `stage` and `versions` answer per scope, from any thread (each call
    has a cursor of its own)."""

    def __init__(
        self,
        directory: Path,
        stub_space: bool,
        split_adjuncts: bool,
        billing: Mapping[str, tuple[int, int]] | None,
        tuning: Tuning,
    ) -> None:
        """With `billing` (storage class -> (minimum billed size, archive overhead)), every
        version and delete marker is also summed for the billable figures (`versions`)."""
        self.tuning = tuning
        self.conn = connect(directory)
        self.directory = directory
        self.stub_space = stub_space
        self.split_adjuncts = split_adjuncts
        self.billing = billing is not None
        self.sources: list[ReportFiles] = []
        self.objects = 0
        self.conn.execute(statements()["create_macros"])
        if billing is not None:
            self.conn.execute(statements()["create_billable"])
            self.conn.executemany(
                "INSERT INTO billing_classes VALUES ($1, $2, $3)",
                [(name, minimum, overhead) for name, (minimum, overhead) in billing.items()],
            )

    def close(self) -> None:
        self.conn.close()

    def add(self, source: ReportFiles) -> None:
        """Adds a location's report to those `finish` sums; with billing, sums its versions
        now (their data files are read again for it)."""
        number = len(self.sources)
        self.sources.append(source)
        location = source.location
        self.set_variables(
            {
                f"source_{number}": source.report.source_bucket,
                f"prefix_{number}": location.prefix,
                f"url_{number}": f"s3://{location.bucket}/{location.prefix}",
            }
        )
        if self.billing:
            objects, params = relation(source, number)
            with read_errors(source):
                self.conn.execute(
                    sqlfiles.filled(statements()["locate_versions"], i=number, objects=objects),
                    params,
                )

    def set_variables(self, values: Mapping[str, Any]) -> None:
        """Sets the DuckDB variables that the statements over every object read (see
        sql/inventory.sql)."""
        for name, value in values.items():
            self.conn.execute(f"SET VARIABLE {name} = $value", {"value": value})

    def finish(self) -> None:
        """Sums the current versions of every source's objects under its location's prefix in
        one scan, into `assets` and `others`; an InventoryError naming the first malformed row,
        if any."""
        located, examples, params, thumbnails = [], [], {}, 0
        for number, source in enumerate(self.sources):
            objects, source_params = relation(source, number)
            prefix, bit = source.location.prefix, 1 << number
            split = self.split_adjuncts and source.location.kind is LocationKind.ARTEFACT
            if source.location.kind is LocationKind.THUMBNAIL:
                thumbnails |= bit
            examples.append(sqlfiles.filled(EXAMPLE, bit=bit, i=number))
            located.append(
                sqlfiles.filled(
                    statements()["located_objects"],
                    i=number,
                    bit=bit,
                    objects=objects,
                    rel=f"substr(key, length(getvariable('prefix_{number}')) + 1)"
                    if prefix
                    else "key",
                    adjunct=ADJUNCT if split else "false",
                )
            )
            params.update(source_params)
        self.set_variables(
            {
                "partitions": partitions(self.sources, self.tuning),
                "thumbnails": thumbnails,
                "stub_space": self.stub_space,
            }
        )
        params["path"] = str(self.directory / "partitions")
        statement = sqlfiles.filled(
            statements()["partition_objects"], located=" UNION ALL ".join(located)
        )
        add_assets = sqlfiles.filled(statements()["add_assets"], examples=", ".join(examples))
        self.conn.execute(statements()["create_sums"])
        with read_errors(*self.sources):
            self.conn.execute(statement, params)
        for part in sorted((self.directory / "partitions").iterdir()):
            files = [str(path) for path in part.glob("*.parquet")]
            self.conn.execute(statements()["sum_partition"], {"files": files})
            if self.conn.execute(statements()["bad_rows"]).fetchone()[0]:
                raise self.first_malformed()
            self.conn.execute(add_assets)
            self.conn.execute(statements()["add_others"])
            self.objects += int(
                self.conn.execute("SELECT coalesce(sum(objects), 0) FROM part").fetchone()[0]
            )
            shutil.rmtree(part)
        self.conn.execute("DROP TABLE IF EXISTS part")
        self.conn.execute(statements()["order_assets"])

    def first_malformed(self) -> InventoryError:
        """The error naming the first malformed row of the first source that has one."""
        for number, source in enumerate(self.sources):
            objects, params = relation(source, number, named=True)
            row = self.conn.execute(
                sqlfiles.filled(statements()["bad_row"], objects=objects), params
            ).fetchone()
            if row is not None:
                return malformed(source, row)
        raise AssertionError("a malformed row was counted but is not found")

    def versions(self, customer: int) -> list[tuple[int | None, str, bool, bool, int, int, int]]:
        """A customer's versions and delete markers per (space, storage class, is latest, is
        delete marker): how many, their bytes and their billed bytes."""
        rows = self.conn.cursor().execute(statements()["customer_versions"], {"customer": customer})
        return [
            (space, cls, latest, marker, int(count), int(size), int(billed))
            for space, cls, latest, marker, count, size, billed in rows.fetchall()
        ]

    def customers(self) -> set[int]:
        """Every customer with objects in the reports."""
        return {row[0] for row in self.conn.cursor().execute(statements()["customers"]).fetchall()}

    def outside(self) -> tuple[int, int]:
        """Objects and bytes outside every customer prefix."""
        objects, size = self.conn.cursor().execute(statements()["outside"]).fetchone()
        return int(objects), int(size)

    def stage(
        self,
        customer: int,
        spaces: Spaces,
        asset_id: str | None,
        registry: Path,
        staged: Path,
    ) -> ScopeSums:
        """Writes the figures of every asset of `registry` (PostgreSQL's CSV of a customer's
        registered assets in the scope) to the CSV file `staged`, and returns the rest of what
        the scope's objects add up to."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(statements()["load_registry"], {"path": str(registry)})
            cursor.execute(
                statements()["stage_assets"], {"customer": customer, "path": str(staged)}
            )
            scope = {"customer": customer, "asset": asset_id, **spaces.params()}
            total = cursor.execute(statements()["scope_totals"], scope).fetchone()
            orphans = cursor.execute(
                statements()["scope_orphans"], {**scope, "examples": ORPHAN_EXAMPLES}
            ).fetchall()
        finally:
            cursor.close()
        spaces_orphans = tuple(
            SpaceOrphans(
                customer=customer,
                space=space,
                objects=int(objects),
                bytes=int(size),
                assets=min(assets, ORPHAN_ASSETS_COUNTED),
                examples=tuple(examples),
            )
            for space, objects, size, assets, examples in orphans
        )
        return ScopeSums(int(total[0]), int(total[1]), int(total[2]), int(total[3]), spaces_orphans)


@contextmanager
def read_errors(*sources: ReportFiles) -> Iterator[None]:
    """Turns DuckDB's errors while reading `sources` into one InventoryError naming the report
    (the first's, unless DuckDB names a data file of another) and the data file DuckDB names."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report = sources[0].report
        for source in sources:
            for path, url in zip(source.files, source.urls, strict=True):
                if str(path) in first:
                    first, report = first.replace(str(path), url), source.report
        raise InventoryError(
            f"inventory report {report.manifest_url} is unreadable: {first}"
        ) from exc


def malformed(source: ReportFiles, row: Any) -> InventoryError:
    """The InventoryError naming a malformed row: its file, its key and what is wrong."""
    file, bucket, key, size, is_latest, is_delete_marker = row
    url = dict(zip(map(str, source.files), source.urls, strict=True)).get(file, file)
    if bucket != source.report.source_bucket:
        what = f"an object of bucket {bucket!r}, not of {source.report.source_bucket!r}"
    elif not key:
        what = "a row without a key"
    elif is_latest is not None and is_latest.lower() not in ("true", "false"):
        what = f"key {key!r} has IsLatest {is_latest!r}, not true or false"
    elif is_delete_marker is not None and is_delete_marker.lower() not in ("true", "false"):
        what = f"key {key!r} has IsDeleteMarker {is_delete_marker!r}, not true or false"
    else:
        what = f"key {key!r} has size {size!r}, not a number of bytes"
    return InventoryError(f"inventory data file {url}: {what}")
