"""Fixtures for the tests against SeaweedFS, a real S3-compatible server on 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from storage_calc.cli import cli
from storage_calc.config import Settings
from tests.conftest import settings_with_prefixes
from tests.s3_proxy import S3Proxy
from tests.seaweedfs import SeaweedFS, start_seaweedfs

_buckets = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.seaweedfs)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    # Two buckets a test, a volume each: left to SeaweedFS, the volumes allowed are one per GB
    # of free disk space, fewer than the suite's buckets on a disk with less than about 60 GB
    # free. Volumes are not preallocated: the tests' few bytes are all they take.
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), max_volumes=500)
    yield server
    server.stop()


@pytest.fixture
def weed_proxy(seaweedfs: SeaweedFS) -> Iterator[S3Proxy]:
    proxy = S3Proxy(seaweedfs.url)
    yield proxy
    proxy.close()


@pytest.fixture
def buckets(seaweedfs: SeaweedFS, aws_env: None) -> tuple[str, str]:
    """A fresh storage and thumbnails bucket for the test."""
    n = next(_buckets)
    names = (f"storage-{n}", f"thumbs-{n}")
    client = boto3.client("s3", endpoint_url=seaweedfs.url)
    for name in names:
        client.create_bucket(Bucket=name)
    return names


@pytest.fixture
def weed_put(seaweedfs: SeaweedFS, buckets: tuple[str, str]) -> Callable[..., None]:
    """Puts objects one at a time, parents first: SeaweedFS can lose one of `X` and `X/child`
    written in parallel."""
    client = boto3.client("s3", endpoint_url=seaweedfs.url)

    def put(bucket: str, objects: dict[str, int]) -> None:
        for key in sorted(objects, key=lambda k: (k.count("/"), k)):
            client.put_object(Bucket=bucket, Key=key, Body=b"\0" * objects[key])

    return put


@pytest.fixture
def weed_settings(database_url: str, buckets: tuple[str, str]) -> Settings:
    return settings_with_prefixes(database_url, *buckets)


@pytest.fixture
def through_proxy(weed_proxy: S3Proxy, monkeypatch: pytest.MonkeyPatch) -> S3Proxy:
    """Points boto3's configuration chain at the fault-injecting proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", weed_proxy.url)
    return weed_proxy


@pytest.fixture
def weed_invoke(
    database_url: str, buckets: tuple[str, str], through_proxy: S3Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:  # fmt: skip
    """Runs the CLI in-process with its real S3 client, through the proxy to SeaweedFS."""
    monkeypatch.setenv("STORAGE_CALC_DATABASE_URL", database_url)
    monkeypatch.setenv("STORAGE_CALC_STORAGE_BUCKET", buckets[0])
    monkeypatch.setenv("STORAGE_CALC_THUMBS_BUCKET", buckets[1])

    def invoke(*args: str, **kwargs: Any) -> Result:
        return CliRunner().invoke(cli, list(args), **kwargs)

    return invoke
