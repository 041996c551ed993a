"""Settings and the parsers of their textual forms; reads no environment itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from storage_calc.errors import ConfigError
from storage_calc.model import Destination, Location, LocationKind, Shard

DEFAULT_STORAGE_BUCKET = "dlcs-storage"
DEFAULT_THUMBS_BUCKET = "dlcs-thumbs"
DEFAULT_API_BASE_URL = "https://api.dlcs.example"
# Listing requests in flight: enough to hide the round trips of a distant S3 (the benchmark's
# runs behind its delaying proxy), few enough for one process on a small pod; S3 serves
# thousands of requests per second per prefix.
DEFAULT_WORKERS = 32
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_QUOTA_MARGIN = Decimal(90)
# Reports are written daily or weekly; figures from a report older than this are refused.
DEFAULT_MAX_INVENTORY_AGE = timedelta(hours=48)
# Seconds waited before each new attempt when the database connection breaks: long enough for a
# pooler restart or a failover to finish, bounded so that a database that stays down fails the
# run in well under a minute.
DEFAULT_RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0)
SOURCES = ("listing", "inventory")

# S3's rules for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class Tuning:
    """How a run cuts its work: sizes that bound its memory and its round trips, not choices of
    an operator (no option sets them); tests set them small to reach the code paths that large
    customers take. benchmarks/README.md has the measurements behind the defaults."""

    # Registered assets per key range of a space: a range is listed by its own requests and
    # holds only its own slice of the registry, so a space of millions of assets is listed by
    # many requests at once in bounded memory.
    registry_slice: int = 1_000
    # Per-asset figures copied into the staging table per COPY.
    stage_batch: int = 20_000
    # Registered assets fetched per round trip while a customer's registry is streamed.
    registry_batch: int = 10_000
    # Inventory data file bytes summed per partition, and the most partitions a report is cut
    # into, so that each partition's groups fit in DuckDB's memory.
    partition_bytes: int = 100 << 20
    max_partitions: int = 1024


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides its scope, built once per command from its options:
    the database's URL (the embedded server's when none is configured), where the objects
    are and how they are read, the resources' base URL, the listing concurrency and the quota
    margin."""

    database_url: str
    locations: tuple[Location, ...] = (
        Location(DEFAULT_STORAGE_BUCKET, "", LocationKind.ARTEFACT),
        Location(DEFAULT_THUMBS_BUCKET, "", LocationKind.THUMBNAIL),
    )
    api_base_url: str = DEFAULT_API_BASE_URL
    workers: int = DEFAULT_WORKERS
    quota_margin: Decimal = DEFAULT_QUOTA_MARGIN
    # Where the objects are read from: "listing" (ListObjectsV2) or "inventory" (the newest
    # S3 Inventory report of each location's bucket, at these destinations).
    source: str = "listing"
    storage_inventory: Destination | None = None
    thumbs_inventory: Destination | None = None
    max_inventory_age: timedelta = DEFAULT_MAX_INVENTORY_AGE
    # Also compute what S3 bills beyond current versions (storage_calc.billable).
    billable: bool = False
    # The waits before each new attempt at a statement or a customer whose database connection
    # broke; how many there are bounds the attempts.
    reconnect_delays: tuple[float, ...] = DEFAULT_RECONNECT_DELAYS
    tuning: Tuning = Tuning()


def parse_location(text: str, kind: LocationKind) -> Location:
    """`bucket` or `bucket/prefix/` as a Location; a prefix always ends in `/`."""
    bucket, _, prefix = text.partition("/")
    if not _BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(
            f"{text!r} is not 'bucket' or 'bucket/prefix/': "
            f"{bucket!r} is not a valid S3 bucket name"
        )
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if prefix.startswith("/") or "//" in prefix:
        raise ConfigError(f"{text!r} has an empty segment in its prefix")
    return Location(bucket, prefix, kind)


def parse_destination(url: str) -> Destination:
    """`s3://bucket/[prefix/]{source-bucket}/{config-id}/` as a Destination; a ConfigError
    saying what is wrong with anything else."""
    rest = url.removeprefix("s3://")
    bucket, _, path = rest.partition("/")
    parts = path.rstrip("/").split("/") if path.strip("/") else []
    problem = _destination_problem(url, bucket, parts)
    if problem:
        raise ConfigError(f"inventory destination {url!r} {problem}")
    return Destination(bucket, "/".join(parts) + "/", parts[-2], parts[-1])


def _destination_problem(url: str, bucket: str, parts: list[str]) -> str | None:
    """Why `url` is not a destination, or None."""
    if not url.startswith("s3://"):
        return "is not an s3:// URL (s3://bucket/prefix/source-bucket/config-id/)"
    if not _BUCKET_NAME.fullmatch(bucket):
        return f"does not start with a bucket name (found {bucket!r})"
    if len(parts) < 2 or not all(parts):
        return "must end with /source-bucket/config-id/ (the folder AWS writes the reports in)"
    if not _BUCKET_NAME.fullmatch(parts[-2]):
        return f"names {parts[-2]!r} as the source bucket, which is not a bucket name"
    return None


def parse_shard(text: str) -> Shard:
    """`I/N` with 0 <= I < N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None:
        raise ConfigError(f"{text!r} is not a shard: expected I/N, such as 0/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ConfigError(f"shard {text!r} is out of range: I must be between 0 and N-1")
    return Shard(index, count)


def indexed_shard(index: str | None, count: int) -> Shard:
    """Shard `index`/`count`, with the index Kubernetes Indexed Jobs set (JOB_COMPLETION_INDEX)."""
    if index is None:
        raise ConfigError("--shards needs JOB_COMPLETION_INDEX, which Kubernetes Indexed Jobs set")
    return parse_shard(f"{index}/{count}")


def parse_base_url(text: str) -> str:
    """An http(s) base URL without its trailing slash."""
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise ConfigError(f"{text!r} is not an http(s) URL")
    return text.rstrip("/")


def parse_margin(text: str) -> Decimal:
    """A percentage of a policy limit, such as `90` or `92.5%`: more than 0, at most 100."""
    try:
        margin = Decimal(text.strip().removesuffix("%"))
    except InvalidOperation:
        margin = Decimal(0)
    if not margin.is_finite() or not 0 < margin <= 100:
        raise ConfigError(f"{text!r} is not a percentage above 0 and at most 100, such as 90")
    return margin


_DURATION = re.compile(r"(\d+)([hdw])")
_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


def parse_age(text: str) -> timedelta:
    """An age such as `90d`, `12h` or `2w`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{text!r} is not an age: a number and h, d or w, such as 90d")
    return timedelta(hours=int(match[1]) * _HOURS[match[2]])
