"""SeaweedFS data directories kept between benchmark runs, one per dataset.

Putting 100,000 objects takes about five minutes and a million about an hour; listing them takes
seconds. A directory is used again only if it holds the marker file, written once every object
was put and the buckets listed back exactly the dataset's keys and bytes; a directory without
it is what an interrupted load left, and is loaded again from scratch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from benchmarks.dataset import Dataset
from benchmarks.floor import listed
from benchmarks.process import progress
from tests.seaweedfs import start_seaweedfs

DEFAULT_CACHE = Path.home() / ".cache" / "storage-calc-bench"
MARKER = "complete.json"
LOAD_BATCH = 2_000


@dataclass(frozen=True)
class Buckets:
    storage: str
    thumbs: str


@dataclass(frozen=True)
class Served:
    """A running SeaweedFS holding a dataset, and how long its load took (when it was made)."""

    url: str
    directory: Path
    load_seconds: float
    reused: bool


@contextlib.contextmanager
def seaweedfs_holding(
    cache: Path, name: str, contents: list[tuple[Buckets, Dataset]]
) -> Iterator[Served]:
    """SeaweedFS serving `contents` from `cache/seaweedfs-NAME` for the duration of the block:
    the directory of an earlier complete load as it is, or a new one loaded and verified now.
    `name` must tell apart every dataset that `contents` can be."""
    objects = sum(data.objects for _, data in contents)
    with seaweedfs_loaded(
        cache, name, f"{objects:,} objects", lambda url: load(url, contents)
    ) as served:
        yield served


@contextlib.contextmanager
def seaweedfs_loaded(
    cache: Path, name: str, what: str, loader: Callable[[str], float]
) -> Iterator[Served]:
    """SeaweedFS serving from `cache/seaweedfs-NAME` for the duration of the block: the
    directory of an earlier complete load as it is, or a new one that `loader` (given the
    endpoint, returning its seconds) fills with `what` and verifies now."""
    directory = cache / f"seaweedfs-{name}"
    marker = directory / MARKER
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
    weed = start_seaweedfs(directory)
    try:
        if marker.exists():
            load_seconds = float(json.loads(marker.read_text())["load_seconds"])
            progress(f"reusing {directory}")
            yield Served(weed.url, directory, load_seconds, reused=True)
            return
        progress(f"loading {what} into SeaweedFS in {directory}")
        load_seconds = loader(weed.url)
        # Written last, and renamed into place, so that it exists only beside a complete load.
        written = directory / f"{MARKER}.new"
        written.write_text(json.dumps({"contents": what, "load_seconds": load_seconds}))
        written.rename(marker)
        yield Served(weed.url, directory, load_seconds, reused=False)
    finally:
        weed.stop()


def load(endpoint: str, contents: list[tuple[Buckets, Dataset]]) -> float:
    """Creates the buckets, puts every object and lists each pair of buckets back: seconds."""
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=16))
    began = time.perf_counter()
    for buckets, data in contents:
        for bucket in (buckets.storage, buckets.thumbs):
            client.create_bucket(Bucket=bucket)
        put_all(client, buckets, data)
        expected = (data.objects, sum(data.storage.values()) + sum(data.thumbs.values()))
        found = listed(endpoint, [buckets.storage, buckets.thumbs])
        if found != expected:
            raise SystemExit(
                f"SeaweedFS lists {found} (keys, bytes) in {buckets}, {expected} were put"
            )
    return time.perf_counter() - began


def put_all(client: object, buckets: Buckets, data: Dataset) -> None:
    """Puts every object, parents before children: SeaweedFS can silently lose one of `X` and
    `X/child` written at the same time. Bodies are made by the worker that sends them, and
    objects go to the pool a batch at a time, so memory stays flat at any dataset size."""

    def put(item: tuple[str, str, int]) -> None:
        bucket, key, size = item
        client.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(16) as pool:
        for depth_first in (True, False):
            items = [
                (bucket, key, size)
                for bucket, objects in (
                    (buckets.storage, data.storage),
                    (buckets.thumbs, data.thumbs),
                )
                for key, size in objects.items()
                if (key.count("/") == 2) == depth_first
            ]
            for start in range(0, len(items), LOAD_BATCH):
                list(pool.map(put, items[start : start + LOAD_BATCH]))
