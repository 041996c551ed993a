"""A space cut into key ranges: exact figures whatever the cut, on moto (UTF-8 byte order).

The same dataset runs on SeaweedFS (directory-tree order) in tests/integration."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.model import Scope
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS, tuned

Conn = psycopg.Connection[Any]

# Names that straddle any cut: ids that are prefixes of others followed by characters below
# "/" (so that `foo/...` sorts after `foo-2` in byte order), children without their parent's
# key, an asset of more than a page of keys, and 1,500 orphans between two registered ids.
REGISTERED = [
    "2/5/a", "2/5/a-b", "2/5/foo", "2/5/foo bar", "2/5/foo-2", "2/5/foo-2-a", "2/5/foo.z",
    "2/5/image", "2/5/image-000001", "2/5/image-000002", "2/5/image-000003", "2/5/tiled",
    "2/5/z", "2/5/é", "2/6/other",
]  # fmt: skip
ARTEFACTS = {
    "2/5/a": 1, "2/5/a/original": 2, "2/5/a-b/original": 4, "2/5/a-c/original": 8,
    "2/5/foo": 16, "2/5/foo/original": 32, "2/5/foo/info/3/info.json": 64, "2/5/foo bar": 128,
    "2/5/foo-2": 256, "2/5/foo-2/y": 512, "2/5/foo-2-a/original": 1024, "2/5/foo.z": 2048,
    "2/5/foo!x/original": 4096, "2/5/image/t": 8192, "2/5/image-000001/x": 16384,
    "2/5/image-000002": 32768, "2/5/image-000003/original": 65536, "2/5/z": 131072,
    "2/5/é/u": 262144, "2/6/other/original": 524288, "2/5/tiled": 3,
    **{f"2/5/tiled/{n:04d}.jpg": 5 for n in range(1203)},
    **{f"2/5/image-000002-orphan-{n:04d}/original": 7 for n in range(1500)},
}  # fmt: skip
THUMBNAILS = {
    "2/5/foo/open/100.jpg": 3, "2/5/foo-2/s.json": 5, "2/5/image/low.jpg": 7,
    "2/5/image-000003/s.json": 11, "2/5/é/open/100.jpg": 13, "2/5/zz-orphan/low.jpg": 17,
}  # fmt: skip
ORPHAN_BYTES = 8 + 4096 + 1500 * 7 + 17


def reference(objects: dict[str, int]) -> dict[str, int]:
    """The naive model: an asset owns its key and the keys under `key/`."""
    return {
        a: sum(size for key, size in objects.items() if key == a or key.startswith(a + "/"))
        for a in REGISTERED
    }


def expected() -> dict[str, tuple[int, int]]:
    sizes, thumbs = reference(ARTEFACTS), reference(THUMBNAILS)
    return {a: (sizes[a], thumbs[a]) for a in REGISTERED}


def image_storage(conn: Conn) -> dict[str, tuple[int, int]]:
    rows = conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"')
    return {r[0]: (r[1], r[2]) for r in rows}


def space_totals(conn: Conn) -> dict[int, tuple[int, int, int]]:
    rows = conn.execute(
        'SELECT "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages", '
        '"TotalSizeOfThumbnails" FROM "CustomerStorage" WHERE "Customer" = 2'
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def expected_totals() -> dict[int, tuple[int, int, int]]:
    figures = expected()
    totals = {}
    for space in (5, 6):
        mine = [f for a, f in figures.items() if a.startswith(f"2/{space}/")]
        totals[space] = (len(mine), sum(f[0] for f in mine), sum(f[1] for f in mine))
    totals[0] = tuple(sum(column) for column in zip(totals[5], totals[6], strict=True))
    return totals  # type: ignore[return-value]


@pytest.fixture
def straddling(register: Callable[..., None], put: Callable[..., None]) -> None:
    register(*REGISTERED)
    put(STORAGE, ARTEFACTS)
    put(THUMBS, THUMBNAILS)


def test_figures_are_exact_whatever_the_cut_into_ranges(
    straddling: None, settings: Settings, s3: S3Client, conn: Conn,
) -> None:  # fmt: skip
    for slice_size in (1, 2, 3, 1000):
        conn.execute('DELETE FROM "ImageStorage"; DELETE FROM "CustomerStorage"')
        report = calculator.run(tuned(settings, registry_slice=slice_size), s3)
        assert report.outcome == "done", report.error
        assert image_storage(conn) == expected(), slice_size
        assert space_totals(conn) == expected_totals(), slice_size
        assert report.orphan_bytes == ORPHAN_BYTES, slice_size
        assert report.objects == len(ARTEFACTS) + len(THUMBNAILS), slice_size


def test_a_space_run_cut_into_ranges_is_exact(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    settings = tuned(settings, registry_slice=1)
    register("2/5/foo", "2/5/foo-2", "2/6/bar")
    put(STORAGE, {"2/5/foo-2": 1, "2/5/foo/original": 2, "2/5/foo-3/x": 4, "2/6/bar": 8})
    report = calculator.run(settings, s3, scope=Scope(customer=2, space=5))
    assert image_storage(conn) == {"2/5/foo": (2, 0), "2/5/foo-2": (1, 0)}
    assert (report.objects, report.orphan_bytes) == (3, 4)


def test_unattributed_keys_of_a_space_are_counted_once(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
) -> None:  # fmt: skip
    settings = tuned(settings, registry_slice=1)
    register("2/5/!", "2/5/a")
    put(STORAGE, {"2/5/": 1, "2/5//x": 2, "2/5/!": 4, "2/5/a": 8})
    report = calculator.run(settings, s3)
    assert (report.unattributed, report.bytes) == (2, 15)


def test_memory_does_not_grow_with_the_assets_of_a_space(
    conn: Conn, put: Callable[..., None], settings: Settings, s3: S3Client,
) -> None:  # fmt: skip
    settings = tuned(settings, registry_slice=100, stage_batch=500, registry_batch=500)
    put(STORAGE, {"2/5/asset-0000000/original": 7, "3/5/asset-0000000/original": 7})

    put(STORAGE, {"4/5/asset-0000000/original": 7})
    # One listing thread: the ranges are listed one after the other whatever the load, so the
    # peaks do not depend on which ranges happen to be in flight together.
    one_by_one = replace(settings, workers=1)

    def peak(customer: int, assets: int) -> int:
        ids = (f"{customer}/5/asset-{n:07d}" for n in range(assets))
        db.register_assets(conn, ids)
        tracemalloc.start()
        report = calculator.run(one_by_one, s3, scope=Scope(customer=customer))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert (report.outcome, report.assets, report.bytes) == ("done", assets, 7)
        return top

    peak(4, 2_000)  # what the first run allocates once (caches, lazy imports) is not compared
    # Bounded, the peaks are within a tenth of each other; holding the registry, the larger
    # is more than ten times the smaller.
    small, large = peak(2, 2_000), peak(3, 40_000)
    assert large < 2 * small, (small, large)


def test_ranges_beyond_the_last_key_of_a_space_are_not_listed(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: Conn,
) -> None:  # fmt: skip
    settings = tuned(settings, registry_slice=10)
    register(*[f"2/5/asset-{n:04d}" for n in range(200)])
    put(STORAGE, {"2/5/asset-0000/original": 3})
    put(THUMBS, {"2/5/asset-0001/low.jpg": 5})
    listings: list[tuple[str, str]] = []
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2",
        lambda params, **_: listings.append((params["Bucket"], params["Prefix"])),
    )
    # 4 workers over 2 locations: 2 ranges in flight (walk.Listing.ranges_in_flight). A third
    # range starts only once one has ended and shown that no key follows it.
    report = calculator.run(replace(settings, workers=4), s3, scope=Scope(customer=2))
    assert (report.assets, report.bytes) == (200, 8), report.customers
    assert image_storage(conn)["2/5/asset-0001"] == (0, 5)
    # 20 ranges in each of 2 buckets: the customer's prefix is listed once in each, then at
    # most the 2 ranges first in flight, whatever their timing.
    for bucket in (STORAGE, THUMBS):
        listed = [prefix for b, prefix in listings if b == bucket]
        assert listed[0] == "2/" and listed[1:] in (["2/5/"], ["2/5/", "2/5/"]), listings
