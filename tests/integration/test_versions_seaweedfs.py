"""Billable bytes against SeaweedFS: its ListObjectVersions, ListMultipartUploads and ListParts,
and where its paging loses entries (storage_calc.sources.versions says what each server does)."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from storage_calc.billable import BillableTally
from storage_calc.model import Billable, Location, LocationKind
from storage_calc.sources.listing import S3Client, make_s3_client
from storage_calc.sources.versions import billable_of, list_uploads, list_versions
from tests.conftest import FIRST_PART, SECOND_PART, put_versioned
from tests.seaweedfs import SeaweedFS


def entries(pages: Any) -> list[tuple[Any, ...]]:
    return sorted(astuple(v) for page in pages for v in page)


@pytest.fixture
def weed(seaweedfs: SeaweedFS, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> S3Client:
    """The job's own client, pointed at SeaweedFS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs.url)
    return make_s3_client(max_connections=4)


@pytest.fixture
def raw(seaweedfs: SeaweedFS, aws_env: None) -> Any:
    return boto3.client("s3", endpoint_url=seaweedfs.url)


def test_a_customer_is_billed_for_every_version_marker_and_upload(
    weed: S3Client, raw: Any, buckets: tuple[str, str]
) -> None:
    started = datetime.now(UTC).replace(microsecond=0)
    put_versioned(raw, *buckets)
    locations = (
        Location(buckets[0], "", LocationKind.ARTEFACT),
        Location(buckets[1], "", LocationKind.THUMBNAIL),
    )
    tally = BillableTally()
    billable_of(weed, locations, "2/", tally)
    outside, space = tally.rows()
    assert outside == Billable(
        customer=2, space=None, current_objects=1, current_bytes=7, billed_bytes=7,
        noncurrent_versions=0, noncurrent_bytes=0, delete_markers=0, incomplete_uploads=0,
        incomplete_upload_bytes=0, oldest_upload=None, by_storage_class={"STANDARD": 7},
    )  # fmt: skip
    assert space.oldest_upload is not None
    assert started <= space.oldest_upload <= datetime.now(UTC) + timedelta(seconds=1)
    assert space == Billable(
        customer=2, space=5, current_objects=3, current_bytes=315,
        billed_bytes=305 + 128 * 1024 + 150 + FIRST_PART + SECOND_PART,
        noncurrent_versions=2, noncurrent_bytes=150, delete_markers=1, incomplete_uploads=1,
        incomplete_upload_bytes=FIRST_PART + SECOND_PART, oldest_upload=space.oldest_upload,
        by_storage_class={"STANDARD": 305, "STANDARD_IA": 10},
    )  # fmt: skip


def test_uploads_are_paged_by_the_upload_id_marker_it_gives(
    weed: S3Client, raw: Any, buckets: tuple[str, str]
) -> None:
    started = {raw.create_multipart_upload(Bucket=buckets[0], Key=k)["UploadId"]
               for k in ("2/5/b", "2/6/a", "2/5/b", "2/5/a", "2/7/z")}  # fmt: skip
    pages = list(list_uploads(weed, buckets[0], "2/", max_uploads=1))
    assert {u.upload_id for page in pages for u in page} == started


def test_versions_are_paged_whole_where_no_name_is_also_a_parent(
    weed: S3Client, raw: Any, buckets: tuple[str, str]
) -> None:
    put_versioned(raw, *buckets)
    whole = entries(list_versions(weed, buckets[0], "2/"))
    assert len(whole) == 6
    assert entries(list_versions(weed, buckets[0], "2/", max_keys=1)) == whole


def test_paging_loses_the_versions_of_a_name_that_is_also_a_parent(
    weed: S3Client, raw: Any, buckets: tuple[str, str]
) -> None:
    raw.put_bucket_versioning(Bucket=buckets[0], VersioningConfiguration={"Status": "Enabled"})
    for key in ("2/5/foo", "2/5/foo/original", "2/5/foo bar", "2/5/foo-2"):
        raw.put_object(Bucket=buckets[0], Key=key, Body=b"\0")
    whole = {v.key for page in list_versions(weed, buckets[0], "2/") for v in page}
    assert whole == {"2/5/foo", "2/5/foo/original", "2/5/foo bar", "2/5/foo-2"}
    paged = {v.key for page in list_versions(weed, buckets[0], "2/", max_keys=1) for v in page}
    assert paged < whole and "2/5/foo" not in paged
