"""S3 Inventory reports written exactly as AWS writes them (storage-inventory-location.md):
manifest fields, fileSchema per format, URL-encoded CSV keys, Parquet and ORC types, checksum."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

from storage_calc.sources.listing import S3Client, list_pages
from storage_calc.sources.versions import list_versions
from tests.conftest import INVENTORY, STORAGE

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
    prefix: str = PREFIX,
) -> str:
    """Writes a report as AWS does under `prefix`: the data file, then manifest.json, then
    manifest.checksum (left out with `checksum=False`, a report still being written). `data`
    may alter the data file's bytes after the manifest recorded them. Returns the report's
    folder."""
    folder = f"{prefix}{created:%Y-%m-%dT%H-%MZ}/"
    if file_format == "CSV":
        body = csv_file(fields, rows)
    else:
        body = columnar_file(fields, rows, file_format)
    key = f"{prefix}data/{created:%Y%m%d%H%M}.{EXTENSIONS[file_format]}"
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


def report_of_bucket(
    s3: S3Client, bucket: str, file_format: str = "CSV", created: datetime = CREATED
) -> str:
    """Writes a report of every object of `bucket`, as listed now, under `reports/{bucket}/nightly/`
    of the inventory bucket; returns its destination URL."""
    rows = [
        Row(key, size, bucket=bucket)
        for page in list_pages(s3, bucket, "")
        for key, size in page.objects
    ]
    prefix = f"reports/{bucket}/nightly/"
    write_report(s3, rows, created, file_format, source=bucket, prefix=prefix)
    return f"s3://{INVENTORY}/{prefix}"


def versions_report_of_bucket(
    s3: S3Client, bucket: str, file_format: str = "CSV", created: datetime = CREATED
) -> str:
    """Writes a report of all versions of `bucket`, as listed now, under
    `reports/{bucket}/versions/` of the inventory bucket; returns its destination URL."""
    rows = [
        Row(
            v.key,
            None if v.is_delete_marker else v.size,
            version_id=f"v{number}",
            is_latest=v.is_latest,
            is_delete_marker=v.is_delete_marker,
            storage_class="" if v.is_delete_marker else v.storage_class or "STANDARD",
            bucket=bucket,
        )
        for page in list_versions(s3, bucket, "")
        for number, v in enumerate(page)
    ]
    prefix = f"reports/{bucket}/versions/"
    write_report(s3, rows, created, file_format, VERSIONS, source=bucket, prefix=prefix)
    return f"s3://{INVENTORY}/{prefix}"
