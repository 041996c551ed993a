"""deploy/iam/storage-calc-policy.json against what the job does: every S3 operation of every
kind of run (listing, one asset, dry run, billable bytes, inventory reports) is recorded on the
job's own client, and each must be allowed by the policy, and each grant of the policy used."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS
from tests.inventories import report_of_bucket

POLICY = json.loads(
    (Path(__file__).parent.parent / "deploy/iam/storage-calc-policy.json").read_text()
)
# The IAM action each S3 operation needs, and whether it acts on the bucket or an object.
ACTIONS = {
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListObjectVersions": ("s3:ListBucketVersions", "bucket"),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "bucket"),
    "ListParts": ("s3:ListMultipartUploadParts", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "HeadObject": ("s3:GetObject", "object"),
}


def arn(operation: str, params: dict[str, Any]) -> tuple[str, str]:
    """The action and resource IAM checks for one S3 request (KeyError: an operation the
    policy was never written for)."""
    action, on = ACTIONS[operation]
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    return action, bucket if on == "bucket" else f"{bucket}/{params['Key']}"


def grants() -> list[tuple[str, str]]:
    return [
        (action, resource)
        for statement in POLICY["Statement"]
        if statement["Effect"] == "Allow"
        for action in statement["Action"]
        for resource in statement["Resource"]
    ]


def allowed(action: str, resource: str) -> bool:
    return any(a == action and fnmatch.fnmatchcase(resource, r) for a, r in grants())


@pytest.fixture
def inventories(
    register: Callable[..., None], put: Callable[..., None], inventory_s3: S3Client
) -> list[str]:
    """Two customers' objects, an unfinished upload in each bucket, and inventory reports of
    both buckets: the options of a run that reads them."""
    register("2/5/a", "2/6/b")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 200, "2/5/orphan": 3})
    put(THUMBS, {"2/5/a/open/100.jpg": 5})
    for bucket in (STORAGE, THUMBS):
        inventory_s3.create_multipart_upload(Bucket=bucket, Key="2/5/a/unfinished")
    return [
        "--source", "inventory",
        "--storage-inventory", report_of_bucket(inventory_s3, STORAGE),
        "--thumbs-inventory", report_of_bucket(inventory_s3, THUMBS),
        "--max-inventory-age", "52w",
    ]  # fmt: skip


@pytest.fixture
def recorded(
    inventories: list[str], inventory_s3: S3Client
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every request the job's client makes from now on: (operation, parameters)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, params))

    inventory_s3.meta.events.register("provide-client-params.s3", record)
    yield calls
    inventory_s3.meta.events.unregister("provide-client-params.s3", record)


def every_kind_of_run(invoke: Callable[..., Result], inventories: list[str]) -> None:
    runs = [
        [],
        ["--asset", "2/5/a"],
        ["--customer", "2", "--space", "5"],
        ["--dry-run"],
        ["--billable"],
        inventories,
    ]
    for args in runs:
        result = invoke("run", *args)
        assert result.exit_code == 0, (args, result.stderr)


def test_the_policy_allows_every_request_of_every_kind_of_run_and_nothing_more(
    recorded: list[tuple[str, dict[str, Any]]],
    invoke: Callable[..., Result],
    inventories: list[str],
) -> None:
    every_kind_of_run(invoke, inventories)
    made = {arn(operation, params) for operation, params in recorded}
    assert {a for a, _ in made} == {a for a, _ in grants()}
    assert [m for m in made if not allowed(*m)] == []
    unused = [
        g for g in grants() if not any(a == g[0] and fnmatch.fnmatchcase(r, g[1]) for a, r in made)
    ]
    assert unused == []
