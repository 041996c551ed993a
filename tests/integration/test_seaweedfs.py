"""The calculator against SeaweedFS: real listing order, pagination, key encoding and errors,
with faults injected on the wire by a proxy."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import Outcome
from storage_calc.sources.listing import make_s3_client
from tests import test_key_ranges as key_ranges
from tests.conftest import tuned
from tests.s3_proxy import S3Proxy
from tests.test_listing_answers import ANSWERS

Conn = psycopg.Connection[Any]

ASSETS = ["2/5/foo", "2/5/foo-2", "2/5/foobar", "2/5/a b", "2/5/a+b", "2/5/%41", "2/5/é", "2/6/av"]
ARTEFACTS = {
    "2/5/foo": 100, "2/5/foo/original": 1000, "2/5/foo/info/iiif/3/info.json": 7,
    "2/5/foo-2": 200, "2/5/foobar/original": 30, "2/5/foo bar": 999,
    "2/5/a b": 11, "2/5/a+b": 13, "2/5/%41/original": 17, "2/5/é/original": 19,
    "2/6/av/full/full/max/max/0/default.mp4": 5000, "2/6/av/full/max/default.mp3": 400,
    "2/6/gone/original": 77, "2/pdf/report.pdf": 3, "transient/2/5/foo": 4,
}  # fmt: skip
THUMBNAILS = {"2/5/foo/open/100.jpg": 5, "2/5/a b/s.json": 2, "2/6/av/low.jpg": 9}


def reference(assets: list[str], objects: dict[str, int]) -> dict[str, int]:
    """The naive model: an asset owns its key and the keys under `key/`."""
    return {
        a: sum(size for key, size in objects.items() if key == a or key.startswith(a + "/"))
        for a in assets
    }


def image_storage(conn: Conn) -> dict[str, tuple[int, int]]:
    rows = conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"')
    return {r[0]: (r[1], r[2]) for r in rows}


def customer_rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails", "LastCalculated" FROM "CustomerStorage" ORDER BY 1, 2'
    ).fetchall()


@pytest.fixture
def layout(register: Callable[..., None], weed_put: Callable[..., None], buckets: Any) -> None:
    register(*ASSETS)
    weed_put(buckets[0], ARTEFACTS)
    weed_put(buckets[1], THUMBNAILS)


def expected() -> dict[str, tuple[int, int]]:
    sizes, thumbs = reference(ASSETS, ARTEFACTS), reference(ASSETS, THUMBNAILS)
    return {a: (sizes[a], thumbs[a]) for a in ASSETS}


def run(settings: Settings) -> Any:
    return calculator.run(settings, make_s3_client(4))


def test_figures_equal_the_reference_model(
    layout: None, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    report = run(weed_settings)
    assert image_storage(conn) == expected()
    assert report.orphan_bytes == ARTEFACTS["2/5/foo bar"] + ARTEFACTS["2/6/gone/original"]
    assert report.unattributed == 2


def test_more_than_a_page_of_objects_in_one_asset(
    register: Callable[..., None], weed_put: Callable[..., None], buckets: Any,
    weed_settings: Settings, conn: Conn, through_proxy: S3Proxy,
) -> None:  # fmt: skip
    register("3/1/tiles")
    weed_put(buckets[0], {f"3/1/tiles/{n:04d}.jpg": 3 for n in range(1203)} | {"3/1/tiles": 1})
    run(weed_settings)
    assert image_storage(conn) == {"3/1/tiles": (3610, 0)}


def test_throttling_and_resets_are_retried_to_exact_figures(
    layout: None, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    through_proxy.fail("prefix=2%2F5%2F", 503, "SlowDown", times=2)
    through_proxy.drop("prefix=2%2F6%2F", times=1)
    through_proxy.fail("prefix=2%2F&", 500, "InternalError", times=1)
    report = run(weed_settings)
    assert report.outcome == "done", report
    assert image_storage(conn) == expected()
    assert all(rule.matched == rule.times for rule in through_proxy.rules)


def test_a_page_that_keeps_failing_fails_only_its_customer(
    layout: None, register: Callable[..., None], weed_put: Callable[..., None], buckets: Any,
    weed_settings: Settings, conn: Conn, through_proxy: S3Proxy, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    register("3/1/other")
    weed_put(buckets[0], {"3/1/other": 8})
    run(weed_settings)
    before = customer_rows(conn)
    weed_put(buckets[0], {"2/5/foo/more": 1, "3/1/other/more": 2})
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    failing = through_proxy.fail(f"/{buckets[0]}?list-type=2&prefix=2%2F6%2F", 500, "InternalError")
    report = run(weed_settings)
    assert failing.matched == 3
    assert [(c.customer, c.outcome) for c in report.customers] == [
        (2, Outcome.FAILED), (3, Outcome.DONE)
    ]  # fmt: skip
    assert "failed after retries: InternalError" in (report.customers[0].error or "")
    after = customer_rows(conn)
    assert [r for r in after if r[0] == 2] == [r for r in before if r[0] == 2]
    assert [r[:5] for r in after if r[0] == 3] == [(3, 0, 1, 10, 0), (3, 1, 1, 10, 0)]
    flags = conn.execute('SELECT DISTINCT "CheckingInProgress" FROM "ImageStorage"').fetchall()
    assert flags == [(False,)]


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_that_is_not_the_listing_asked_for_is_retried_to_exact_figures(
    body: bytes, layout: None, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    rule = through_proxy.answer("prefix=2%2F5%2F", body, times=1)
    assert run(weed_settings).outcome == "done"
    assert rule.matched == 1
    assert image_storage(conn) == expected()


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_that_is_never_the_listing_asked_for_fails_only_its_customer(
    body: bytes, layout: None, register: Callable[..., None], weed_put: Callable[..., None],
    buckets: Any, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    register("3/1/other")
    weed_put(buckets[0], {"3/1/other": 8})
    run(weed_settings)
    before = customer_rows(conn)
    weed_put(buckets[0], {"2/5/foo/more": 1})
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    rule = through_proxy.answer(f"/{buckets[0]}?list-type=2&prefix=2%2F5%2F", body)
    report = run(weed_settings)
    assert rule.matched == 2
    assert [(c.customer, c.outcome) for c in report.customers] == [
        (2, Outcome.FAILED), (3, Outcome.DONE)
    ]  # fmt: skip
    assert [r for r in customer_rows(conn) if r[0] == 2] == [r for r in before if r[0] == 2]


def test_the_cli_names_the_failed_customer_and_exits_1(
    layout: None, weed_invoke: Callable[..., Result], through_proxy: S3Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    through_proxy.fail("prefix=2%2F5%2F", 503, "SlowDown")
    result = weed_invoke("run")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors[0].startswith("Error: customer 2: listing s3://storage-")
    assert "failed after retries: SlowDown" in errors[0]


def test_access_denied_is_one_line(
    layout: None, weed_invoke: Callable[..., Result], through_proxy: S3Proxy
) -> None:
    through_proxy.fail("list-type=2", 403, "AccessDenied")
    result = weed_invoke("run", "--customer", "2")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors[0].startswith("Error: customer 2: access denied listing s3://storage-")


def test_a_missing_bucket_is_one_line(layout: None, weed_invoke: Callable[..., Result]) -> None:
    result = weed_invoke("run", "--thumbs-bucket", "no-such-thumbs")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: bucket 'no-such-thumbs' does not exist (check --storage-bucket / --thumbs-bucket)"
    )


def test_a_second_run_gives_identical_figures(
    layout: None, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    run(weed_settings)
    first = [r[:5] for r in customer_rows(conn)]
    report = run(weed_settings)
    assert [r[:5] for r in customer_rows(conn)] == first
    assert report.changes == ()


def test_figures_are_exact_whatever_the_cut_into_ranges_in_tree_order(
    register: Callable[..., None], weed_put: Callable[..., None], buckets: Any,
    weed_settings: Settings, conn: Conn, through_proxy: S3Proxy,
) -> None:  # fmt: skip
    register(*key_ranges.REGISTERED)
    orphans = {k: v for k, v in key_ranges.ARTEFACTS.items() if "-orphan-" in k}
    weed_put(buckets[0], {k: v for k, v in key_ranges.ARTEFACTS.items() if k not in orphans})
    weed_put(buckets[1], key_ranges.THUMBNAILS)
    # No orphan key is the parent of another, so they can be written in parallel.
    chunks = [dict(list(orphans.items())[n::8]) for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda chunk: weed_put(buckets[0], chunk), chunks))
    for slice_size in (1, 2, 3, 1000):
        conn.execute('DELETE FROM "ImageStorage"; DELETE FROM "CustomerStorage"')
        report = run(tuned(weed_settings, registry_slice=slice_size))
        assert report.outcome == "done", report.error
        assert key_ranges.image_storage(conn) == key_ranges.expected(), slice_size
        assert key_ranges.space_totals(conn) == key_ranges.expected_totals(), slice_size
        assert report.orphan_bytes == key_ranges.ORPHAN_BYTES, slice_size
