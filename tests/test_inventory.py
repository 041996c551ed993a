"""S3 Inventory reports written as AWS writes them, on moto, read by storage_calc.inventory."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from storage_calc import inventory
from storage_calc.errors import ConfigError, InventoryError
from storage_calc.inventory import Batch, Destination, Report
from storage_calc.listing import S3Client
from tests.conftest import STORAGE

INVENTORY = "dlcs-inventory"
DESTINATION = f"s3://{INVENTORY}/reports/{STORAGE}/nightly/"
PREFIX = f"reports/{STORAGE}/nightly/"
CREATED = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)

# The fields AWS writes, in its order, for a report of current versions and of all versions.
CURRENT = ("Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass")
VERSIONS = ("Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", *CURRENT[2:])

# Column types as AWS's ORC and Parquet schemas give them (storage-inventory-location.md).
# fmt: off
ORC_TYPES = {"bucket": "string", "key": "string", "version_id": "string",
             "is_latest": "boolean", "is_delete_marker": "boolean", "size": "bigint",
             "last_modified_date": "timestamp", "e_tag": "string", "storage_class": "string"}
PARQUET_TYPES = {"bucket": "required binary", "key": "required binary",
                 "version_id": "optional binary", "is_latest": "optional boolean",
                 "is_delete_marker": "optional boolean", "size": "optional int64",
                 "last_modified_date": "optional int64", "e_tag": "optional binary",
                 "storage_class": "optional binary"}
ARROW_TYPES = {"bucket": pa.string(), "key": pa.string(), "version_id": pa.string(),
               "is_latest": pa.bool_(), "is_delete_marker": pa.bool_(), "size": pa.int64(),
               "last_modified_date": pa.timestamp("ms"), "e_tag": pa.string(),
               "storage_class": pa.string()}
SNAKE = {"Bucket": "bucket", "Key": "key", "VersionId": "version_id", "IsLatest": "is_latest",
         "IsDeleteMarker": "is_delete_marker", "Size": "size",
         "LastModifiedDate": "last_modified_date", "ETag": "e_tag",
         "StorageClass": "storage_class"}
# fmt: on

AWKWARD = ["2/5/foo bar", "2/5/a+b", "2/5/%41", "2/5/é/x", "2/5/foo-2"]


@dataclass(frozen=True)
class Row:
    key: str
    size: int | None
    version_id: str = ""
    is_latest: bool = True
    is_delete_marker: bool = False
    storage_class: str = "STANDARD"
    bucket: str = STORAGE

    def value(self, name: str) -> Any:
        if name == "last_modified_date":
            return datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
        if name == "e_tag":
            return "d41d8cd98f00b204e9800998ecf8427e"
        return getattr(self, name)


def csv_value(name: str, row: Row) -> str:
    """A value as AWS's CSV writes it: keys URL-encoded (a space as `+`), flags in lower case."""
    value = row.value(name)
    if name == "key":
        return quote_plus(value, safe="/")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return "" if value is None else str(value)


def csv_file(fields: tuple[str, ...], rows: list[Row]) -> bytes:
    names = [SNAKE[f] for f in fields]
    lines = [",".join(f'"{csv_value(n, row)}"' for n in names) for row in rows]
    return gzip.compress("".join(line + "\n" for line in lines).encode())


def arrow_table(fields: tuple[str, ...], rows: list[Row]) -> pa.Table:
    names = [SNAKE[f] for f in fields]
    # Bucket and key are `required` in AWS's schemas, every other column `optional`.
    schema = pa.schema([pa.field(n, ARROW_TYPES[n], n not in ("bucket", "key")) for n in names])
    return pa.table({n: [r.value(n) for r in rows] for n in names}, schema=schema)


def columnar_file(fields: tuple[str, ...], rows: list[Row], file_format: str) -> bytes:
    out = io.BytesIO()
    if file_format == "ORC":
        orc.write_table(arrow_table(fields, rows), out, compression="zlib")
    else:
        pq.write_table(arrow_table(fields, rows), out, compression="snappy")
    return out.getvalue()


def file_schema(fields: tuple[str, ...], file_format: str) -> str:
    names = [SNAKE[f] for f in fields]
    if file_format == "CSV":
        return ", ".join(fields)
    if file_format == "ORC":
        return "struct<" + ",".join(f"{n}:{ORC_TYPES[n]}" for n in names) + ">"
    columns = " ".join(f"{PARQUET_TYPES[n]} {n};" for n in names)
    return f"message s3.inventory {{ {columns} }}"


EXTENSIONS = {"CSV": "csv.gz", "ORC": "orc", "Parquet": "parquet"}


def write_report(
    s3: S3Client,
    rows: list[Row],
    created: datetime = CREATED,
    file_format: str = "CSV",
    fields: tuple[str, ...] = CURRENT,
    source: str = STORAGE,
    checksum: bool = True,
    data: Callable[[bytes], bytes] = lambda body: body,
) -> str:
    """Writes a report as AWS does: the data file, then manifest.json, then manifest.checksum
    (left out with `checksum=False`, a report still being written). `data` may alter the data
    file's bytes after the manifest recorded them. Returns the report's folder."""
    folder = f"{PREFIX}{created:%Y-%m-%dT%H-%MZ}/"
    if file_format == "CSV":
        body = csv_file(fields, rows)
    else:
        body = columnar_file(fields, rows, file_format)
    key = f"{PREFIX}data/{created:%Y%m%d%H%M}.{EXTENSIONS[file_format]}"
    s3.put_object(Bucket=INVENTORY, Key=key, Body=data(body))
    manifest = json.dumps(
        {
            "sourceBucket": source,
            "destinationBucket": f"arn:aws:s3:::{INVENTORY}",
            "version": "2016-11-30",
            "creationTimestamp": str(int(created.timestamp() * 1000)),
            "fileFormat": file_format,
            "fileSchema": file_schema(fields, file_format),
            "files": [
                {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()}
            ],
        },
        indent=4,
    ).encode()
    s3.put_object(Bucket=INVENTORY, Key=f"{folder}manifest.json", Body=manifest)
    if checksum:
        md5 = hashlib.md5(manifest).hexdigest()
        s3.put_object(Bucket=INVENTORY, Key=f"{folder}manifest.checksum", Body=md5.encode())
    return folder


@pytest.fixture
def inventory_s3(s3: S3Client) -> S3Client:
    s3.create_bucket(Bucket=INVENTORY)
    return s3


def latest(s3: S3Client) -> Report:
    return inventory.latest_report(s3, inventory.parse_destination(DESTINATION), STORAGE)


def read_rows(s3: S3Client) -> list[tuple[Any, ...]]:
    """Every row of the latest report as (key, size, is_latest, is_delete_marker, version_id,
    storage_class)."""
    rows = []
    for batch in inventory.read_objects(s3, latest(s3)):
        rows += zip(
            batch.keys,
            batch.sizes,
            batch.is_latest,
            batch.is_delete_marker,
            batch.version_ids,
            batch.storage_classes,
            strict=True,
        )
    return rows


# --- the destination ---------------------------------------------------------------------


def test_a_destination_url_names_bucket_prefix_source_bucket_and_configuration() -> None:
    assert inventory.parse_destination(DESTINATION) == Destination(
        INVENTORY, PREFIX, STORAGE, "nightly"
    )


def test_a_destination_without_a_prefix_or_its_last_slash_is_read_alike() -> None:
    assert inventory.parse_destination(f"s3://{INVENTORY}/{STORAGE}/nightly") == Destination(
        INVENTORY, f"{STORAGE}/nightly/", STORAGE, "nightly"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"https://{INVENTORY}/{STORAGE}/nightly/",
        f"s3://{INVENTORY}/nightly/",
        f"s3://{INVENTORY}/",
        f"s3://{INVENTORY}/reports//nightly/",
        "s3://Not_A_Bucket/dlcs-storage/nightly/",
    ],
)
def test_a_destination_of_another_shape_is_a_one_line_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^inventory destination .*") as error:
        inventory.parse_destination(url)
    assert "\n" not in str(error.value)


# --- the newest complete report ----------------------------------------------------------


def test_the_newest_complete_report_is_picked(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/old", 1)], created=CREATED - timedelta(days=1))
    folder = write_report(inventory_s3, [Row("2/5/new", 2)])
    report = latest(inventory_s3)
    assert (report.folder, report.created) == (folder, CREATED)
    assert read_rows(inventory_s3)[0][:2] == ("2/5/new", 2)


def test_a_newer_folder_without_its_checksum_is_skipped_for_the_one_before(
    inventory_s3: S3Client,
) -> None:
    folder = write_report(inventory_s3, [Row("2/5/done", 1)])
    writing = write_report(
        inventory_s3, [Row("2/5/partial", 1)], created=CREATED + timedelta(days=1), checksum=False
    )
    report = latest(inventory_s3)
    assert (report.folder, report.skipped) == (folder, (writing,))


def test_a_checksum_that_does_not_match_its_manifest_is_an_error_not_a_fallback(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/old", 1)], created=CREATED - timedelta(days=1))
    folder = write_report(inventory_s3, [Row("2/5/new", 1)])
    inventory_s3.put_object(Bucket=INVENTORY, Key=f"{folder}manifest.checksum", Body=b"0" * 32)
    with pytest.raises(InventoryError, match=r"manifest\.json has MD5 [0-9a-f]{32}, but its "):
        latest(inventory_s3)


def test_a_manifest_of_another_bucket_is_refused_naming_both(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1, bucket="other")], source="other")
    with pytest.raises(InventoryError, match=r"is of bucket 'other', not 'dlcs-storage'$"):
        latest(inventory_s3)


def test_no_complete_report_is_an_error(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], checksum=False)
    with pytest.raises(InventoryError, match=r"^no complete inventory report under s3://.*: 1 "):
        latest(inventory_s3)


def test_the_manifest_gives_creation_time_format_fields_and_files(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], file_format="Parquet", fields=VERSIONS)
    report = latest(inventory_s3)
    assert report.created == CREATED and report.created.tzinfo is not None
    assert report.file_format == "Parquet"
    assert report.fields == tuple(SNAKE[f] for f in VERSIONS)
    assert [f.key for f in report.files] == [f"{PREFIX}data/202611280100.parquet"]


def test_a_report_without_size_is_refused(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], fields=("Bucket", "Key", "StorageClass"))
    with pytest.raises(InventoryError, match=r"has no size in its fileSchema"):
        latest(inventory_s3)


def test_a_stale_report_is_refused_with_its_creation_time_and_age(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    with pytest.raises(
        InventoryError, match=r"was created at 2026-11-28 01:00 UTC, 50\.5 hours ago, more than "
    ):
        inventory.check_age(latest(inventory_s3), now=CREATED + timedelta(hours=50, minutes=30))


def test_a_report_younger_than_the_maximum_age_passes(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    inventory.check_age(latest(inventory_s3), now=CREATED + timedelta(hours=47))


# --- the data files ----------------------------------------------------------------------


def test_a_data_file_missing_from_the_destination_is_an_error(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    inventory_s3.delete_object(Bucket=INVENTORY, Key=f"{PREFIX}data/202611280100.csv.gz")
    with pytest.raises(InventoryError, match=r"202611280100\.csv\.gz, listed in the manifest, is"):
        read_rows(inventory_s3)


def test_a_data_file_whose_md5_differs_from_the_manifest_is_an_error(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], data=lambda body: body[:-1] + b"X")
    with pytest.raises(InventoryError, match=r"has checksum [0-9a-f]{32}, the manifest says "):
        read_rows(inventory_s3)


def test_a_data_file_whose_size_differs_from_the_manifest_is_an_error(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], data=lambda body: body + b"\0")
    with pytest.raises(InventoryError, match=r"has \d+ bytes, the manifest says \d+$"):
        read_rows(inventory_s3)


def test_a_csv_row_with_a_bad_size_is_named_with_its_file_and_row(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], fields=("Bucket", "Key", "Size"))
    key = f"{PREFIX}data/202611280100.csv.gz"
    rows = b'"dlcs-storage","2/5/a","1"\n"dlcs-storage","2/5/b","2"\n"dlcs-storage","2/5/c","1x"\n'
    rewrite_data_file(inventory_s3, key, gzip.compress(rows))
    with pytest.raises(
        InventoryError, match=r"202611280100\.csv\.gz, row 3: size '1x' is not a number of bytes$"
    ):
        read_rows(inventory_s3)


def test_a_row_without_a_size_that_is_no_delete_marker_is_malformed(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1), Row("2/5/b", None)], file_format="Parquet")
    with pytest.raises(InventoryError, match=r"\.parquet, row 2: size None is not a number of"):
        read_rows(inventory_s3)


def test_a_csv_row_with_too_few_columns_is_named_with_its_row(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    key = f"{PREFIX}data/202611280100.csv.gz"
    body = gzip.compress(b'"dlcs-storage","2/5/a","1","","",""\n"dlcs-storage","2/5/b"\n')
    rewrite_data_file(inventory_s3, key, body)
    with pytest.raises(InventoryError, match=r", row 2: CSV parse error: .*Expected 6 columns"):
        read_rows(inventory_s3)


def rewrite_data_file(s3: S3Client, key: str, body: bytes) -> None:
    """Replaces a data file and keeps the manifest (and its checksum) true to it."""
    manifest_key = f"{PREFIX}2026-11-28T01-00Z/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=INVENTORY, Key=manifest_key)["Body"].read())
    manifest["files"] = [
        {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()}
    ]
    text = json.dumps(manifest).encode()
    s3.put_object(Bucket=INVENTORY, Key=key, Body=body)
    s3.put_object(Bucket=INVENTORY, Key=manifest_key, Body=text)
    checksum = hashlib.md5(text).hexdigest().encode()
    s3.put_object(Bucket=INVENTORY, Key=manifest_key.replace(".json", ".checksum"), Body=checksum)


def test_a_row_of_another_bucket_is_an_error(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1), Row("2/5/b", 1, bucket="dlcs-thumbs")])
    with pytest.raises(InventoryError, match=r", row 2: an object of bucket 'dlcs-thumbs', not "):
        read_rows(inventory_s3)


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_every_format_gives_the_same_rows_for_awkward_keys(
    inventory_s3: S3Client, file_format: str
) -> None:
    rows = [Row(key, size) for size, key in enumerate(AWKWARD, start=10)]
    write_report(inventory_s3, rows, file_format=file_format)
    assert [row[:2] for row in read_rows(inventory_s3)] == [
        ("2/5/foo bar", 10), ("2/5/a+b", 11), ("2/5/%41", 12), ("2/5/é/x", 13), ("2/5/foo-2", 14)
    ]  # fmt: skip


def test_in_csv_a_plus_is_a_space_and_percent_2b_a_plus(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a+b c", 1)])
    data = inventory_s3.get_object(Bucket=INVENTORY, Key=f"{PREFIX}data/202611280100.csv.gz")
    assert b'"2/5/a%2Bb+c"' in gzip.decompress(data["Body"].read())
    assert read_rows(inventory_s3)[0][0] == "2/5/a+b c"


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_version_fields_are_read_when_the_report_has_them(
    inventory_s3: S3Client, file_format: str
) -> None:
    rows = [
        Row("2/5/a", 5, version_id="v2", is_latest=True),
        Row("2/5/a", 3, version_id="v1", is_latest=False, storage_class="GLACIER"),
        Row("2/5/b", None, version_id="v9", is_delete_marker=True, storage_class=""),
    ]
    write_report(inventory_s3, rows, file_format=file_format, fields=VERSIONS)
    assert read_rows(inventory_s3) == [
        ("2/5/a", 5, True, False, "v2", "STANDARD"),
        ("2/5/a", 3, False, False, "v1", "GLACIER"),
        ("2/5/b", 0, True, True, "v9", None),
    ]


def test_fields_a_report_lacks_are_filled_as_current_versions(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 7)], fields=("Bucket", "Key", "Size"))
    assert read_rows(inventory_s3) == [("2/5/a", 7, True, False, None, None)]


def test_batches_hold_at_most_batch_rows(
    inventory_s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory, "BATCH_ROWS", 2)
    write_report(inventory_s3, [Row(f"2/5/a{i}", i) for i in range(5)], file_format="ORC")
    batches: list[Batch] = list(inventory.read_objects(inventory_s3, latest(inventory_s3)))
    assert [len(batch) for batch in batches] == [2, 2, 1]


def test_without_pyarrow_reading_says_how_to_install_it(
    inventory_s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    report = latest(inventory_s3)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InventoryError, match=r"^the inventory source needs: pip install 'storage"):
        next(inventory.read_objects(inventory_s3, report))


def test_neither_the_listing_nor_this_module_imports_pyarrow_when_loaded() -> None:
    code = (
        "import sys, storage_calc.listing, storage_calc.inventory, storage_calc.calculator; "
        "print('pyarrow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
