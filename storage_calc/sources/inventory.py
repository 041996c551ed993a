"""S3 Inventory reports: the newest complete report of a bucket, read in columns.

A source of (key, size) for the calculator other than ListObjectsV2: AWS writes the report of a
bucket daily or weekly, and reading it costs a few GETs instead of one LIST per 1,000 keys.

What this relies on, from the Amazon S3 User Guide (storage-inventory.md,
storage-inventory-location.md, storage-inventory-athena-query.md):

- Layout. Under the destination bucket, `destination-prefix/source-bucket/config-ID/` holds
  one folder per report, named for when its scan began (`YYYY-MM-DDTHH-MMZ/`, so the names
  sort as their times do), with `manifest.json` and `manifest.checksum`, the MD5 of the
  manifest's bytes in hex; the data files are under `.../config-ID/data/` (and `hive/` holds
  the Hive symlinks, which this module does not read).
- manifest.json. `sourceBucket` (a name), `destinationBucket` (an ARN), `version`,
  `creationTimestamp` (milliseconds since the epoch, as a string), `fileFormat` (`CSV`, `ORC`
  or `Parquet`), `fileSchema`, and `files`, each `{key, size, MD5checksum}`, `key` being a key
  of the destination bucket. `fileSchema` is, for CSV, the column names in order
  (`Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, ...`); for ORC a
  `struct<bucket:string,key:string,...,size:bigint,...>`; for Parquet a message type
  (`message s3.inventory { required binary bucket (UTF8); ... optional int64 size; ... }`).
  The ORC and Parquet column names are the CSV names in snake case (`VersionId` is
  `version_id`, `ETag` is `e_tag`), and `Report.fields` holds those for every format.
- Data files. CSV compressed with GZIP, no header, the columns of `fileSchema` in its order,
  every value quoted; ORC compressed with ZLIB; Parquet with Snappy. Rows are not sorted.
  `Bucket` and `Key` are always there; `VersionId`, `IsLatest` and `IsDeleteMarker` only in a
  report of all versions; `Size`, `StorageClass` and the rest only if configured. A report
  without `Size` is refused: it cannot give storage figures.
- Keys. "When using the CSV file format, the key name is URL-encoded and must be decoded" (ORC
  and Parquet hold them as they are). The guide does not say which URL encoding. Readers of
  real reports found it is the form encoding of S3's event notifications (whose page says
  "red flower.jpg" becomes "red+flower.jpg") and of ListObjectsV2 with `EncodingType=url`: a
  space is `+` and a `+` is `%2B` (cloud-custodian issue 1997, whose inventory reader moved to
  `unquote_plus` for that). So CSV keys are decoded as `urllib.parse.unquote_plus` would:
  every `+` a space, then every `%XX` its byte (see `storage_calc.sources.inventory_sums`).

Decisions:

- A folder without `manifest.json` or without `manifest.checksum` is a report still being
  written (AWS writes the checksum last) and is passed over for the one before it. A folder
  with both whose checksum does not match its manifest is an error, not a reason to fall back:
  a report AWS says is complete but whose manifest is corrupt means the destination is not what
  AWS wrote, and figures computed from yesterday's report instead would hide that.
- Data files are read from the bucket the manifest was found in (a replicated destination
  keeps the keys), not from `destinationBucket`.
- Every data file is downloaded into a local directory while its MD5 and size are computed,
  and checked against the manifest before any of its rows is read: no figure is ever computed
  from a file that turns out to be corrupt. The disk holds the whole report (about 10 bytes per
  object in Parquet) while it is read.
- An `MD5checksum` that is not 32 hex digits (the ETag of a multipart upload has the form
  `hex-parts`) cannot be compared with the MD5 of the bytes, so it is compared with the
  object's ETag instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from storage_calc.errors import InventoryError, ListingError
from storage_calc.model import Destination
from storage_calc.sources.listing import S3Client, call_s3, list_pages

# Bytes per read while downloading a data file.
CHUNK = 1 << 20
# Data files downloaded at once: a report of billions of objects has hundreds of them.
DOWNLOADS = 4

FORMATS = {"csv": "CSV", "orc": "ORC", "parquet": "Parquet"}
REQUIRED = ("bucket", "key", "size")
# Report folders are named for the time their scan began; `data/` and `hive/` are not reports.
FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z")
MD5_HEX = re.compile(r"[0-9a-f]{32}")
MISSING_CODES = ("NoSuchKey", "404", "NotFound")


@dataclass(frozen=True)
class DataFile:
    """One data file of a report, with the size and MD5 the manifest gives, where it gives them."""

    key: str
    size: int | None
    md5: str | None


@dataclass(frozen=True)
class Report:
    """The newest complete report of a source bucket, as its manifest describes it."""

    bucket: str  # where the manifest and the data files are
    folder: str  # the report's folder, `.../YYYY-MM-DDTHH-MMZ/`
    source_bucket: str
    created: datetime  # creationTimestamp, aware, UTC
    file_format: str  # "CSV", "ORC" or "Parquet"
    fields: tuple[str, ...]  # fileSchema's fields in order, in snake case
    files: tuple[DataFile, ...]
    skipped: tuple[str, ...] = ()  # newer folders passed over as still being written

    @property
    def manifest_url(self) -> str:
        return f"s3://{self.bucket}/{self.folder}manifest.json"


# --- the newest complete report ----------------------------------------------------------


def latest_report(s3: S3Client, destination: Destination, source_bucket: str) -> Report:
    """The newest complete report under `destination`, checked to be of `source_bucket`.

    Folders still being written are skipped; a complete-looking folder whose checksum does not
    match its manifest is an InventoryError (see the module's decisions), as is finding none.
    """
    folders = report_folders(s3, destination)
    skipped: list[str] = []
    for folder in folders:
        manifest = complete_manifest(s3, destination.bucket, folder)
        if manifest is None:
            skipped.append(folder)
            continue
        return parse_manifest(manifest, destination.bucket, folder, source_bucket, skipped)
    raise InventoryError(
        f"no complete inventory report under {destination.url}: {len(folders)} report folders, "
        f"none with both manifest.json and manifest.checksum"
    )


def report_folders(s3: S3Client, destination: Destination) -> list[str]:
    """The report folders under `destination`, newest first (their names sort as their times)."""
    folders = [
        prefix
        for page in list_pages(s3, destination.bucket, destination.prefix, delimiter="/")
        for prefix in page.prefixes
        if FOLDER.fullmatch(prefix.removeprefix(destination.prefix).rstrip("/"))
    ]
    return sorted(folders, reverse=True)


def complete_manifest(s3: S3Client, bucket: str, folder: str) -> bytes | None:
    """The bytes of the folder's manifest.json if the folder is complete, None if it is still
    being written; an InventoryError if its checksum does not match."""
    checksum = read_small(s3, bucket, f"{folder}manifest.checksum")
    manifest = read_small(s3, bucket, f"{folder}manifest.json") if checksum is not None else None
    if checksum is None or manifest is None:
        return None
    expected = checksum.decode("ascii", "replace").strip().lower()
    actual = hashlib.md5(manifest).hexdigest()
    if actual != expected:
        raise InventoryError(
            f"inventory manifest s3://{bucket}/{folder}manifest.json has MD5 {actual}, but its "
            f"manifest.checksum says {expected[:40]!r}"
        )
    return manifest


def parse_manifest(
    body: bytes, bucket: str, folder: str, source_bucket: str, skipped: list[str]
) -> Report:
    """The Report a checked manifest.json describes; an InventoryError naming the first field
    that is missing or wrong."""
    where = f"s3://{bucket}/{folder}manifest.json"
    manifest = load_json(body, where)
    found = field(manifest, "sourceBucket", str, where)
    if found != source_bucket:
        raise InventoryError(
            f"inventory manifest {where} is of bucket {found!r}, not {source_bucket!r}"
        )
    file_format = parse_format(field(manifest, "fileFormat", str, where), where)
    fields = parse_schema(field(manifest, "fileSchema", str, where), file_format, where)
    return Report(
        bucket=bucket,
        folder=folder,
        source_bucket=source_bucket,
        created=parse_timestamp(field(manifest, "creationTimestamp", (str, int), where), where),
        file_format=file_format,
        fields=fields,
        files=parse_files(field(manifest, "files", list, where), where),
        skipped=tuple(skipped),
    )


def load_json(body: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InventoryError(f"inventory manifest {where} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise InventoryError(f"inventory manifest {where} is not a JSON object")
    return manifest


def field(manifest: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`manifest[name]`, which must be of `kind`."""
    value = manifest.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InventoryError(f"inventory manifest {where} has no usable {name} (found {value!r})")
    return value


def parse_format(value: str, where: str) -> str:
    file_format = FORMATS.get(value.lower())
    if file_format is None:
        raise InventoryError(
            f"inventory manifest {where} has fileFormat {value!r}, not CSV, ORC or Parquet"
        )
    return file_format


def parse_timestamp(value: str | int, where: str) -> datetime:
    """creationTimestamp, milliseconds since the epoch (a string in AWS's manifests)."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise InventoryError(
            f"inventory manifest {where} has creationTimestamp {value!r}, not milliseconds "
            f"since the epoch"
        )
    return datetime.fromtimestamp(int(text) / 1000, UTC)


def parse_schema(schema: str, file_format: str, where: str) -> tuple[str, ...]:
    """The field names of fileSchema in order, in snake case; at least Bucket, Key and Size."""
    if file_format == "CSV":
        names = [snake_case(name.strip()) for name in schema.split(",")]
    elif file_format == "ORC":
        inner = schema.strip().removeprefix("struct<").removesuffix(">")
        names = [column.split(":", 1)[0].strip() for column in inner.split(",")]
    else:
        names = re.findall(r"(?:required|optional|repeated)\s+\w+\s+(\w+)", schema)
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise InventoryError(
            f"inventory manifest {where} has no {', '.join(missing)} in its fileSchema: "
            f"{schema[:200]!r} (the inventory configuration must include Size)"
        )
    return tuple(names)


def snake_case(name: str) -> str:
    """A CSV field name as ORC and Parquet spell it: `IsDeleteMarker` is `is_delete_marker`,
    `ETag` is `e_tag`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def parse_files(entries: list[Any], where: str) -> tuple[DataFile, ...]:
    files = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise InventoryError(
                f"inventory manifest {where} lists a file without a key: {entry!r}"
            )
        size, md5 = entry.get("size"), entry.get("MD5checksum")
        files.append(
            DataFile(
                key=entry["key"],
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                md5=md5.lower() if isinstance(md5, str) and md5 else None,
            )
        )
    return tuple(files)


def check_age(report: Report, max_age: timedelta, now: datetime | None = None) -> None:
    """An InventoryError if `report` was created more than `max_age` before `now` (the current
    time by default): figures from it would be that old."""
    now = now or datetime.now(UTC)
    age = now - report.created
    if age > max_age:
        raise InventoryError(
            f"the newest inventory report of {report.source_bucket!r} ({report.manifest_url}) "
            f"was created at {report.created:%Y-%m-%d %H:%M} UTC, {hours(age)} ago, more than "
            f"the {hours(max_age)} allowed"
        )


def hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} hours"


# --- S3 objects --------------------------------------------------------------------------


def get_object(s3: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """The GetObject response of `key`, or None if there is no such key.

    Failures are one line: those of every S3 call (no credentials, S3 unreachable) as the
    listings word them, and refusals with what a reader of the destination needs.
    """
    where = f"s3://{bucket}/{key}"
    try:
        return call_s3(s3.get_object, {"Bucket": bucket, "Key": key}, where)
    except ListingError as exc:
        if not isinstance(exc.__cause__, ClientError):
            raise
        error = exc.__cause__.response.get("Error", {})
        code = error.get("Code", "")
        if code in MISSING_CODES:
            return None
        if code in ("AccessDenied", "403"):
            raise InventoryError(
                f"access denied reading {where}: the credentials need s3:GetObject on {bucket!r}"
            ) from exc
        message = f"reading {where} failed: {code} {error.get('Message', '')}".strip()
        raise InventoryError(message) from exc


def read_small(s3: S3Client, bucket: str, key: str) -> bytes | None:
    """The whole body of a small object (a manifest), or None if there is no such key."""
    response = get_object(s3, bucket, key)
    if response is None:
        return None
    body: bytes = read_body(lambda: response["Body"].read(), f"s3://{bucket}/{key}")
    return body


def read_body(read: Callable[[], Any], where: str) -> Any:
    """`read()`, with a connection lost while reading a body turned into one line."""
    try:
        return read()
    except BotoCoreError as exc:
        raise InventoryError(f"reading {where} failed: {exc}") from exc


def download(s3: S3Client, bucket: str, data_file: DataFile, path: Path) -> None:
    """Writes the data file to `path`, checked against the manifest's size and MD5."""
    where = f"s3://{bucket}/{data_file.key}"
    response = get_object(s3, bucket, data_file.key)
    if response is None:
        raise InventoryError(f"inventory data file {where}, listed in the manifest, is missing")
    digest, size = hashlib.md5(), 0
    with path.open("wb") as out:
        for chunk in read_body(lambda: response["Body"].iter_chunks(CHUNK), where):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    check_download(data_file, where, size, digest.hexdigest(), response.get("ETag", ""))


def check_download(data_file: DataFile, where: str, size: int, md5: str, etag: str) -> None:
    if data_file.size is not None and size != data_file.size:
        raise InventoryError(
            f"inventory data file {where} has {size} bytes, the manifest says {data_file.size}"
        )
    if data_file.md5 is None:
        return
    # A multipart ETag (`hex-parts`) is no MD5 of the bytes; it can only name the object.
    actual = md5 if MD5_HEX.fullmatch(data_file.md5) else etag.strip('"').lower()
    if actual != data_file.md5:
        raise InventoryError(
            f"inventory data file {where} has checksum {actual}, the manifest says {data_file.md5}"
        )


def download_report(s3: S3Client, report: Report, directory: Path) -> tuple[Path, ...]:
    """Downloads every data file of `report` into `directory`, each checked against the
    manifest, a few at once; returns their paths in the manifest's order."""

    def fetch(numbered: tuple[int, DataFile]) -> Path:
        number, data_file = numbered
        path = directory / f"{number:05d}.{report.file_format.lower()}"
        download(s3, report.bucket, data_file, path)
        return path

    with ThreadPoolExecutor(DOWNLOADS, thread_name_prefix="inventory") as pool:
        return tuple(pool.map(fetch, enumerate(report.files)))
