"""The listings behind billable bytes: every version and delete marker (ListObjectVersions),
the unfinished multipart uploads (ListMultipartUploads) and the bytes of their parts
(ListParts). Requests, their errors and their pages go through `listing.paged`, like
ListObjectsV2.

Each listing pages by the markers the server answers with, exactly as given: `NextKeyMarker`
with `NextVersionIdMarker`, `NextKeyMarker` with `NextUploadIdMarker`, `NextPartNumberMarker`.
S3 gives every marker of a truncated page, and a key marker without its version marker would
skip the rest of a key's versions or list them again. A page that says it is truncated but
gives no marker, or the markers of an earlier page, is a ListingError: taken for the end, it
would leave out bytes the bill counts.

What the servers the tests run against do (moto 5, SeaweedFS 4):
- ListObjectVersions: both implement it, with IsLatest, StorageClass and delete markers, and
  both page correctly by KeyMarker and VersionIdMarker together. With KeyMarker alone moto
  answers the marker's key again (a client following it never ends) and SeaweedFS skips keys.
  SeaweedFS also loses versions around a name that is both a key and the parent of keys
  (`2/5/foo` beside `2/5/foo/original`; which of them, and of the names sorting between them
  such as `2/5/foo bar`, depends on where the pages end) once a listing is paged past them,
  with both markers: there, a prefix is complete only where its versions fit in one page
  (1,000) or no name is also a parent.
- ListMultipartUploads: both implement it. moto ignores MaxUploads (one page), answers in the
  order the uploads were started and gives every upload the same `Initiated`
  (2010-11-10T20:48:33Z). SeaweedFS answers in the order of its upload ids and, truncated,
  gives only NextUploadIdMarker, by which alone it pages correctly (a KeyMarker would skip
  uploads); following the markers as given does exactly that.
- ListParts: both implement it and page by PartNumberMarker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote_plus

from storage_calc.billable import BillableTally
from storage_calc.model import Location
from storage_calc.sources.listing import S3Client, paged

P = TypeVar("P")


class Counted(Protocol):
    """What a listing source does with each page as it comes in (`walk.Listing.counted`):
    counts its objects in the run's progress, and raises Interrupted once a stop is
    requested."""

    def __call__(self, page: P, objects: int) -> P: ...


def uncounted(page: P, objects: int) -> P:
    """Each page as it is: a listing outside a run, which has no progress and no stop."""
    return page


MAX_KEYS = 1000


@dataclass(frozen=True)
class Version:
    """A version of a key, or a delete marker (no size, no storage class)."""

    key: str
    size: int
    storage_class: str | None
    is_latest: bool
    is_delete_marker: bool


@dataclass(frozen=True)
class Upload:
    """A multipart upload started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


def list_versions(
    s3: S3Client, bucket: str, prefix: str, max_keys: int = MAX_KEYS
) -> Iterator[list[Version]]:
    """Every page of the versions and delete markers of the keys under `prefix`."""
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
    where = f"s3://{bucket}/{prefix}"
    markers = ("NextKeyMarker", "NextVersionIdMarker")
    for page in paged(s3.list_object_versions, request, where, markers, "s3:ListBucketVersions"):
        versions = [
            Version(v["Key"], int(v["Size"]), v.get("StorageClass"), bool(v["IsLatest"]), False)
            for v in page.get("Versions", ())
        ]
        versions += [
            Version(d["Key"], 0, None, bool(d["IsLatest"]), True)
            for d in page.get("DeleteMarkers", ())
        ]
        yield versions


def list_uploads(
    s3: S3Client, bucket: str, prefix: str, max_uploads: int = MAX_KEYS
) -> Iterator[list[Upload]]:
    """Every page of the unfinished multipart uploads of keys under `prefix`.

    Keys are asked for URL-encoded, so that a key with a character XML cannot carry still
    lists; botocore decodes them only for the object listings, so they are decoded here, once,
    where the server says it encoded them.
    """
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "MaxUploads": max_uploads,
        "EncodingType": "url",
    }
    where = f"s3://{bucket}/{prefix}"
    markers = ("NextKeyMarker", "NextUploadIdMarker")
    permission = "s3:ListBucketMultipartUploads"
    for page in paged(s3.list_multipart_uploads, request, where, markers, permission):
        decode = unquote_plus if page.get("EncodingType") == "url" else str
        # Decoded before `_pages` reads it, which happens only when the next page is asked for:
        # the marker goes back as the key itself, and botocore encodes it in the query.
        if "NextKeyMarker" in page:
            page["NextKeyMarker"] = decode(page["NextKeyMarker"])
        yield [
            Upload(decode(u["Key"]), u["UploadId"], _timestamp(u["Initiated"]))
            for u in page.get("Uploads", ())
        ]


def upload_size(
    s3: S3Client, bucket: str, key: str, upload_id: str, max_parts: int = MAX_KEYS
) -> int:
    """The bytes of the parts uploaded so far to an unfinished upload."""
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "MaxParts": max_parts,
    }
    pages = paged(
        s3.list_parts,
        request,
        f"s3://{bucket}/{key}",
        ("NextPartNumberMarker",),
        "s3:ListMultipartUploadParts",
    )
    return sum(int(part["Size"]) for page in pages for part in page.get("Parts", ()))


def billable_of(
    s3: S3Client,
    locations: tuple[Location, ...],
    prefix: str,
    tally: BillableTally,
    counted: Counted = uncounted,
) -> None:
    """Adds to `tally` every version, delete marker and unfinished upload under `prefix`
    (`{customer}/` for a customer) of each location, keys relative to the location's prefix.
    Every page passes through `counted` (the run's progress and stop) as it comes in."""
    for location in locations:
        cut = len(location.prefix)
        for versions in list_versions(s3, location.bucket, location.prefix + prefix):
            for v in counted(versions, len(versions)):
                tally.add_version(
                    v.key[cut:], v.size, v.storage_class, v.is_latest, v.is_delete_marker
                )
    uploads_of(s3, locations, prefix, tally, counted)


def uploads_of(
    s3: S3Client,
    locations: tuple[Location, ...],
    prefix: str,
    tally: BillableTally,
    counted: Counted = uncounted,
) -> None:
    """Adds to `tally` every unfinished upload under `prefix` of each location, with the
    bytes of its parts: what an inventory, which lists no upload, leaves out. Every page passes
    through `counted`."""
    for location in locations:
        cut = len(location.prefix)
        for uploads in list_uploads(s3, location.bucket, location.prefix + prefix):
            for u in counted(uploads, len(uploads)):
                size = upload_size(s3, location.bucket, u.key, u.upload_id)
                tally.add_upload(u.key[cut:], size, u.initiated)


def _timestamp(value: datetime | str) -> datetime:
    """A timestamp as the client parsed it: a string with the job's own client, which skips
    botocore's date parsing, a datetime with any other. Naive times are UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
