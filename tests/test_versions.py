"""The listings behind billable bytes on moto: versions, delete markers, unfinished uploads and
their parts, paged and attributed to customers and spaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from storage_calc.billable import BillableTally
from storage_calc.errors import ListingError
from storage_calc.model import Billable, Location, LocationKind
from storage_calc.sources.listing import S3Client
from storage_calc.sources.versions import billable_of, list_uploads, list_versions, upload_size
from tests.conftest import FIRST_PART, SECOND_PART, STORAGE, THUMBS, error_response

LOCATIONS = (
    Location(STORAGE, "", LocationKind.ARTEFACT),
    Location(THUMBS, "", LocationKind.THUMBNAIL),
)
# moto gives every multipart upload this start time.
MOTO_INITIATED = datetime(2010, 11, 10, 20, 48, 33, tzinfo=UTC)

CUSTOMER_2 = [
    Billable(
        customer=2, space=None, current_objects=1, current_bytes=7, billed_bytes=7,
        noncurrent_versions=0, noncurrent_bytes=0, delete_markers=0, incomplete_uploads=0,
        incomplete_upload_bytes=0, oldest_upload=None, by_storage_class={"STANDARD": 7},
    ),
    Billable(
        customer=2, space=5, current_objects=3, current_bytes=300 + 10 + 5,
        billed_bytes=300 + 128 * 1024 + 5 + 100 + 50 + FIRST_PART + SECOND_PART,
        noncurrent_versions=2, noncurrent_bytes=100 + 50, delete_markers=1,
        incomplete_uploads=1, incomplete_upload_bytes=FIRST_PART + SECOND_PART,
        oldest_upload=MOTO_INITIATED, by_storage_class={"STANDARD": 305, "STANDARD_IA": 10},
    ),
]  # fmt: skip


def entries(pages: Any) -> list[tuple[str, int, bool, bool]]:
    return sorted((v.key, v.size, v.is_latest, v.is_delete_marker) for page in pages for v in page)


def test_a_customer_is_billed_for_every_version_marker_and_upload(
    s3: S3Client, versioned: None
) -> None:
    tally = BillableTally()
    billable_of(s3, LOCATIONS, "2/", tally)
    assert tally.rows() == CUSTOMER_2
    assert tally.outside_entries == 0


def test_keys_outside_every_customer_are_counted_apart(s3: S3Client, versioned: None) -> None:
    tally = BillableTally()
    billable_of(s3, LOCATIONS, "", tally)
    assert tally.rows()[:2] == CUSTOMER_2
    assert [(r.customer, r.space, r.current_bytes) for r in tally.rows()[2:]] == [(3, 1, 9)]
    assert (tally.outside_entries, tally.outside_billed_bytes) == (1, 3)


def test_versions_are_listed_whole_one_per_page(s3: S3Client, versioned: None) -> None:
    whole = entries(list_versions(s3, STORAGE, "2/"))
    assert len(whole) == 6
    assert entries(list_versions(s3, STORAGE, "2/", max_keys=1)) == whole


def test_keys_are_relative_to_their_location_prefix(s3: S3Client) -> None:
    s3.create_bucket(Bucket="platform")
    s3.put_object(Bucket="platform", Key="dlcs/2/5/a", Body=b"\0" * 4)
    s3.put_object(Bucket="platform", Key="2/5/a", Body=b"\0" * 8)
    tally = BillableTally()
    billable_of(s3, (Location("platform", "dlcs/", LocationKind.ARTEFACT),), "2/", tally)
    assert [(r.customer, r.space, r.current_bytes) for r in tally.rows()] == [(2, 5, 4)]


def test_the_parts_of_an_upload_are_summed_over_pages(s3: S3Client, versioned: None) -> None:
    [[upload]] = list(list_uploads(s3, STORAGE, "2/"))
    assert upload.key == "2/5/big"
    assert upload_size(s3, STORAGE, upload.key, upload.upload_id, max_parts=1) == (
        FIRST_PART + SECOND_PART
    )


def test_an_upload_key_is_decoded_once(s3: S3Client) -> None:
    s3.create_multipart_upload(Bucket=STORAGE, Key="2/5/a+b c%41")
    assert [u.key for page in list_uploads(s3, STORAGE, "2/") for u in page] == ["2/5/a+b c%41"]


def test_a_truncated_page_without_markers_is_an_error(s3: S3Client, versioned: None) -> None:
    def drop_markers(parsed: dict[str, Any], **_: Any) -> None:
        parsed["IsTruncated"] = True
        parsed.pop("NextKeyMarker", None)
        parsed.pop("NextVersionIdMarker", None)

    s3.meta.events.register("after-call.s3.ListObjectVersions", drop_markers)
    with pytest.raises(ListingError, match="truncated without a new marker"):
        list(list_versions(s3, STORAGE, "2/"))


def test_the_same_markers_twice_are_an_error(s3: S3Client, versioned: None) -> None:
    first: list[tuple[str, str]] = []

    def repeat(parsed: dict[str, Any], **_: Any) -> None:
        first.append((parsed["NextKeyMarker"], parsed["NextVersionIdMarker"]))
        parsed["NextKeyMarker"], parsed["NextVersionIdMarker"] = first[0]

    s3.meta.events.register("after-call.s3.ListObjectVersions", repeat)
    with pytest.raises(ListingError, match="truncated without a new marker"):
        list(list_versions(s3, STORAGE, "2/", max_keys=1))


def test_access_denied_names_the_permission_of_the_listing(s3: S3Client) -> None:
    def deny(request: Any, **_: Any) -> AWSResponse:
        return error_response(403, "AccessDenied")

    s3.meta.events.register("before-send.s3.ListMultipartUploads", deny)
    with pytest.raises(ListingError, match="need s3:ListBucketMultipartUploads on 'dlcs-storage'"):
        list(list_uploads(s3, STORAGE, "2/"))
