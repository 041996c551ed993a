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
  `unquote_plus` for that). So CSV keys are decoded with `urllib.parse.unquote_plus`, which
  also reads `%20` as a space: `unquote` would turn every space into a `+`.

Decisions:

- A folder without `manifest.json` or without `manifest.checksum` is a report still being
  written (AWS writes the checksum last) and is passed over for the one before it. A folder
  with both whose checksum does not match its manifest is an error, not a reason to fall back:
  a report AWS says is complete but whose manifest is corrupt means the destination is not what
  AWS wrote, and figures computed from yesterday's report instead would hide that.
- Data files are read from the bucket the manifest was found in (a replicated destination
  keeps the keys), not from `destinationBucket`.
- Each data file is downloaded to a temporary file while its MD5 and size are computed, and
  checked against the manifest before any of its rows is given out: a caller never counts rows
  of a file that turns out to be corrupt. Then its rows are read in batches of at most
  `BATCH_ROWS` (Parquet row groups, ORC stripes, CSV blocks), so memory stays bounded by one
  row group or stripe whatever the size of the file; the disk holds one data file at a time.
- An `MD5checksum` that is not 32 hex digits (the ETag of a multipart upload has the form
  `hex-parts`) cannot be compared with the MD5 of the bytes, so it is compared with the
  object's ETag instead.

The library: pyarrow, the optional `inventory` extra (`pip install 'storage-calc[inventory]'`),
imported only inside the functions that read data files, so the listing path never loads it.
Measured on 2 shared cores, streaming (key, size) of a 3,000,000-row Parquet file (41 MB,
Snappy, row groups of 250,000 rows, keys like `12/5/asset-0001234/original`) into Python
lists, batches of 65,536 rows, each figure the range of a few runs:

- pyarrow `ParquetFile.iter_batches(use_threads=False)` + `to_pylist`: 4.8-5.5 M rows/s,
  peak RSS 164-165 MiB (181-198 MiB with its threads);
- DuckDB `read_parquet` + `fetchmany`: 1.9-2.1 M rows/s, peak RSS 161-172 MiB;
- DuckDB through its Arrow reader: 5.0-5.4 M rows/s, 192 MiB, and it needs pyarrow anyway.

pyarrow is as fast as the fastest DuckDB path without a second library, reads ORC (DuckDB has
no ORC reader) and gzip CSV with absolute row numbers for bad rows, and is what writes the
test reports. Reading runs on one thread: the machine's cores belong to the listing workers.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from storage_calc.errors import ConfigError, InventoryError, ListingError
from storage_calc.listing import S3Client, call_s3, list_pages

MISSING_LIBRARY = "the inventory source needs: pip install 'storage-calc[inventory]'"

# Rows per Batch: large enough that per-batch costs vanish, small enough to bound memory.
BATCH_ROWS = 65_536
# Bytes per read while downloading a data file.
CHUNK = 1 << 20
DEFAULT_MAX_AGE = timedelta(hours=48)

FORMATS = {"csv": "CSV", "orc": "ORC", "parquet": "Parquet"}
# The columns a Batch is made of; any other column is never read.
COLUMNS = ("bucket", "key", "version_id", "is_latest", "is_delete_marker", "size", "storage_class")
REQUIRED = ("bucket", "key", "size")
# Report folders are named for the time their scan began; `data/` and `hive/` are not reports.
FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MD5_HEX = re.compile(r"[0-9a-f]{32}")
MISSING_CODES = ("NoSuchKey", "404", "NotFound")


@dataclass(frozen=True)
class Destination:
    """Where an inventory configuration writes its reports: `s3://bucket/prefix/source/config/`."""

    bucket: str
    prefix: str  # ends with `{source_bucket}/{config_id}/`
    source_bucket: str
    config_id: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


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


@dataclass(frozen=True)
class Batch:
    """Rows of one data file in columns: the i-th entry of each list is the i-th row.

    Fields a report does not have are filled as a report of current versions means them: every
    row is the latest version, none is a delete marker, with no version id or storage class.
    """

    file: str
    keys: list[str]
    sizes: list[int]
    is_latest: list[bool]
    is_delete_marker: list[bool]
    version_ids: list[str | None]
    storage_classes: list[str | None]

    def __len__(self) -> int:
        return len(self.keys)


# --- the destination ---------------------------------------------------------------------


def parse_destination(url: str) -> Destination:
    """`s3://bucket/[prefix/]{source-bucket}/{config-id}/` as a Destination; a ConfigError
    saying what is wrong with anything else."""
    rest = url.removeprefix("s3://")
    bucket, _, path = rest.partition("/")
    parts = path.rstrip("/").split("/") if path.strip("/") else []
    problem = destination_problem(url, bucket, parts)
    if problem:
        raise ConfigError(f"inventory destination {url!r} {problem}")
    return Destination(bucket, "/".join(parts) + "/", parts[-2], parts[-1])


def destination_problem(url: str, bucket: str, parts: list[str]) -> str | None:
    """Why `url` is not a destination, or None."""
    if not url.startswith("s3://"):
        return "is not an s3:// URL (s3://bucket/prefix/source-bucket/config-id/)"
    if not BUCKET_NAME.fullmatch(bucket):
        return f"does not start with a bucket name (found {bucket!r})"
    if len(parts) < 2 or not all(parts):
        return "must end with /source-bucket/config-id/ (the folder AWS writes the reports in)"
    if not BUCKET_NAME.fullmatch(parts[-2]):
        return f"names {parts[-2]!r} as the source bucket, which is not a bucket name"
    return None


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


def check_age(
    report: Report, max_age: timedelta = DEFAULT_MAX_AGE, now: datetime | None = None
) -> None:
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


# --- the rows ----------------------------------------------------------------------------


def read_objects(s3: S3Client, report: Report, workdir: Path | None = None) -> Iterator[Batch]:
    """The rows of every data file of `report`, in batches of at most BATCH_ROWS.

    Each file is downloaded into a temporary directory (under `workdir` if given) and checked
    against the manifest before its rows are read; it is deleted once they are. Faults are
    InventoryErrors of one line: a missing data file, a size or checksum that differs from the
    manifest's, a malformed row (with the file and row number), a row of another bucket.
    A fault inside a file can come after batches of the same report were given out, so a
    caller must discard what it counted from a report whose reading fails.
    """
    require_pyarrow()
    reader = READERS[report.file_format]
    with tempfile.TemporaryDirectory(prefix="storage-calc-inventory-", dir=workdir) as tmp:
        path = Path(tmp) / "data"
        for data_file in report.files:
            download(s3, report.bucket, data_file, path)
            rows = FileRows(report, data_file.key, f"s3://{report.bucket}/{data_file.key}")
            yield from reader(path, rows)
            path.unlink()


def require_pyarrow() -> None:
    """Imports pyarrow, the `inventory` extra, or says how to install it."""
    try:
        import pyarrow  # noqa: F401  # only imported here and below, never by the listing path
    except ImportError as exc:
        raise InventoryError(MISSING_LIBRARY) from exc


@dataclass
class FileRows:
    """Turns the record batches of one data file into Batches, counting its rows."""

    report: Report
    key: str
    where: str
    done: int = 0  # rows of the file before the next record batch

    def malformed(self, index: int, what: str) -> InventoryError:
        return InventoryError(
            f"inventory data file {self.where}, row {self.done + index + 1}: {what}"
        )

    def wanted(self, available: list[str]) -> list[str]:
        """The columns to read, of those the file has; an error if it lacks a required one."""
        missing = [name for name in REQUIRED if name not in available]
        if missing:
            raise InventoryError(
                f"inventory data file {self.where} has no column {', '.join(missing)} "
                f"(its columns: {', '.join(available)})"
            )
        return [name for name in COLUMNS if name in available]

    def batch(self, columns: dict[str, Any], keys: list[str]) -> Batch:
        """A Batch of `columns` (pyarrow arrays by name) with the keys already decoded."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = len(keys)
        self.check_bucket(columns["bucket"])
        is_delete_marker = bool_column(columns.get("is_delete_marker"), False, rows)
        sizes = columns["size"].cast(pa.int64())
        if sizes.null_count or (rows and pc.min(sizes).as_py() < 0):
            self.check_sizes(sizes, is_delete_marker)
        batch = Batch(
            file=self.key,
            keys=keys,
            sizes=pc.fill_null(sizes, 0).to_pylist(),
            is_latest=bool_column(columns.get("is_latest"), True, rows),
            is_delete_marker=is_delete_marker,
            version_ids=text_column(columns.get("version_id"), rows),
            storage_classes=text_column(columns.get("storage_class"), rows),
        )
        self.done += rows
        return batch

    def check_bucket(self, buckets: Any) -> None:
        import pyarrow.compute as pc

        other = pc.invert(pc.fill_null(pc.equal(buckets, self.report.source_bucket), False))
        if pc.any(other).as_py():
            index = pc.index(other, True).as_py()
            raise self.malformed(
                index,
                f"an object of bucket {buckets[index].as_py()!r}, not of "
                f"{self.report.source_bucket!r}",
            )

    def check_sizes(self, sizes: Any, is_delete_marker: list[bool]) -> None:
        """Only a delete marker may lack a size, and no size is negative."""
        for index, size in enumerate(sizes.to_pylist()):
            if (size is None and not is_delete_marker[index]) or (size is not None and size < 0):
                raise self.malformed(index, f"size {size!r} is not a number of bytes")

    def check_keys(self, keys: Any) -> None:
        if keys.null_count:
            raise self.malformed(keys.to_pylist().index(None), "the key is empty")


def bool_column(values: Any, default: bool, rows: int) -> list[bool]:
    """A boolean column, `default` where the report or the row has no value."""
    if values is None:
        return [default] * rows
    import pyarrow.compute as pc

    return pc.fill_null(values, default).to_pylist()  # type: ignore[no-any-return]  # pyarrow is untyped


def text_column(values: Any, rows: int) -> list[str | None]:
    """A text column, None where the report or the row has no value or an empty one."""
    if values is None:
        return [None] * rows
    return [value or None for value in values.to_pylist()]


def read_parquet(path: Path, rows: FileRows) -> Iterator[Batch]:
    """Row group by row group, only the columns a Batch needs."""
    import pyarrow.parquet as pq

    with arrow_errors(rows.where):
        parquet = pq.ParquetFile(path)
        names = rows.wanted(parquet.schema_arrow.names)
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=names, use_threads=False)
        for record_batch in batches:
            yield typed_batch(record_batch, rows)


def read_orc(path: Path, rows: FileRows) -> Iterator[Batch]:
    """Stripe by stripe, cut into batches of BATCH_ROWS."""
    import pyarrow.orc as orc

    with arrow_errors(rows.where):
        orc_file = orc.ORCFile(path)
        names = rows.wanted(orc_file.schema.names)
        for stripe in range(orc_file.nstripes):
            record_batch = orc_file.read_stripe(stripe, columns=names)
            for start in range(0, record_batch.num_rows, BATCH_ROWS):
                yield typed_batch(record_batch.slice(start, BATCH_ROWS), rows)


def typed_batch(record_batch: Any, rows: FileRows) -> Batch:
    """A Batch from the typed columns of ORC and Parquet, whose keys are not encoded."""
    columns = {name: record_batch.column(name) for name in record_batch.schema.names}
    rows.check_keys(columns["key"])
    return rows.batch(columns, columns["key"].to_pylist())


def read_csv(path: Path, rows: FileRows) -> Iterator[Batch]:
    """Block by block of the gzip CSV, every column read as text and then checked here, so a
    bad value is named with its row."""
    import pyarrow as pa
    import pyarrow.csv as csv

    names = list(rows.report.fields)
    wanted = rows.wanted(names)
    bad_rows: list[int] = []

    def invalid_row(row: Any) -> str:
        bad_rows.append(row.number)
        return "error"

    with arrow_errors(rows.where, bad_rows):
        reader = csv.open_csv(
            pa.input_stream(str(path), compression="gzip"),
            read_options=csv.ReadOptions(column_names=names, use_threads=False, block_size=CHUNK),
            parse_options=csv.ParseOptions(invalid_row_handler=invalid_row),
            convert_options=csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                include_columns=wanted,
                strings_can_be_null=False,
            ),
        )
        for record_batch in reader:
            for start in range(0, record_batch.num_rows, BATCH_ROWS):
                yield csv_batch(record_batch.slice(start, BATCH_ROWS), rows)


def csv_batch(record_batch: Any, rows: FileRows) -> Batch:
    """A Batch from CSV text: sizes and flags checked and typed, keys URL-decoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {name: record_batch.column(name) for name in record_batch.schema.names}
    sizes = columns["size"]
    # An empty size is a delete marker's (checked with the flags); anything else must be digits.
    bad = pc.and_(pc.invert(pc.ascii_is_decimal(sizes)), pc.not_equal(sizes, ""))
    if pc.any(bad).as_py():
        index = pc.index(bad, True).as_py()
        raise rows.malformed(index, f"size {sizes[index].as_py()!r} is not a number of bytes")
    columns["size"] = pc.if_else(pc.equal(sizes, ""), None, sizes).cast(pa.int64())
    for name in ("is_latest", "is_delete_marker"):
        if name in columns:
            columns[name] = csv_flags(columns[name], name, rows)
    keys = [unquote_plus(key) for key in columns["key"].to_pylist()]
    if "" in keys:
        raise rows.malformed(keys.index(""), "the key is empty")
    return rows.batch(columns, keys)


def csv_flags(values: Any, name: str, rows: FileRows) -> Any:
    """`true`/`false` (any case) as booleans, empty as unknown; anything else is malformed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lower = pc.utf8_lower(values)
    known = pc.is_in(lower, value_set=pa.array(["true", "false", ""]))
    if not pc.all(known).as_py():
        index = pc.index(known, False).as_py()
        raise rows.malformed(index, f"{name} {values[index].as_py()!r} is not true or false")
    return pc.if_else(pc.equal(lower, ""), None, pc.equal(lower, "true"))


@contextmanager
def arrow_errors(where: str, bad_rows: list[int] | None = None) -> Iterator[None]:
    """Turns pyarrow's errors about a data file into one InventoryError naming the file, and
    the row where the CSV reader's invalid-row handler recorded one."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if bad_rows:
            raise InventoryError(
                f"inventory data file {where}, row {bad_rows[0]}: {first_line}"
            ) from exc
        raise InventoryError(f"inventory data file {where} is unreadable: {first_line}") from exc


READERS: dict[str, Callable[[Path, FileRows], Iterator[Batch]]] = {
    "CSV": read_csv,
    "ORC": read_orc,
    "Parquet": read_parquet,
}
