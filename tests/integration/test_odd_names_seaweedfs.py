"""Keys with `+`, `%`, spaces, `%2B` spelled out, non-ASCII letters and characters XML 1.0
cannot carry, on SeaweedFS, by every kind of run: it url-encodes the keys of a listing but
echoes the requested prefix as it was sent, so the answer check must accept its spelling of a
correct answer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import calculator
from storage_calc.config import Settings, parse_destination
from storage_calc.model import AssetKey, Scope
from storage_calc.sources.listing import make_s3_client
from tests import odd_names
from tests.conftest import INVENTORY, tuned
from tests.inventories import report_of_bucket
from tests.odd_names import MARKS
from tests.s3_proxy import S3Proxy
from tests.test_inventory_run import NOW

Conn = psycopg.Connection[Any]


@pytest.fixture(params=MARKS.values(), ids=MARKS.keys())
def mark(
    request: pytest.FixtureRequest, register: Callable[..., None], weed_put: Callable[..., None],
    buckets: tuple[str, str],
) -> str:  # fmt: skip
    register(odd_names.asset_of(request.param))
    weed_put(buckets[0], odd_names.artefacts(request.param))
    weed_put(buckets[1], odd_names.thumbnails(request.param))
    return str(request.param)


def test_a_full_run_attributes_every_role(
    mark: str, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    report = calculator.run(weed_settings, make_s3_client(4))
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report) == (odd_names.ORPHAN, odd_names.OUTSIDE)


def test_a_run_of_the_space_attributes_its_roles(
    mark: str, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    report = calculator.run(weed_settings, make_s3_client(4), Scope(customer=2, space=5))
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report)[0] == odd_names.ORPHAN


def test_a_run_of_the_asset_counts_its_key_and_the_objects_under_it(
    mark: str, weed_invoke: Callable[..., Result], conn: Conn
) -> None:
    result = weed_invoke("run", "--asset", odd_names.asset_of(mark))
    assert result.exit_code == 0, result.stderr
    assets, _ = odd_names.figures(conn)
    assert assets == {odd_names.asset_of(mark): odd_names.ASSET_FIGURES}
    assert odd_names.flags_left(conn) == 0


def test_a_run_from_inventories_attributes_every_role(
    mark: str, weed_settings: Settings, buckets: tuple[str, str], conn: Conn,
    through_proxy: S3Proxy,
) -> None:  # fmt: skip
    """Reports of both buckets as SeaweedFS lists them, written to an inventory bucket on it."""
    s3 = make_s3_client(4)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=INVENTORY)
    storage, thumbs = (parse_destination(report_of_bucket(s3, b, created=NOW)) for b in buckets)
    settings = replace(
        weed_settings, source="inventory", storage_inventory=storage, thumbs_inventory=thumbs
    )
    report = calculator.run(settings, s3)
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report) == (odd_names.ORPHAN, odd_names.OUTSIDE)


def test_the_command_exits_0_on_a_bucket_of_every_kind_of_name(
    register: Callable[..., None], weed_put: Callable[..., None], buckets: tuple[str, str],
    weed_invoke: Callable[..., Result], conn: Conn,
) -> None:  # fmt: skip
    register(*(odd_names.asset_of(mark) for mark in MARKS.values()))
    for mark in MARKS.values():
        weed_put(buckets[0], odd_names.artefacts(mark))
        weed_put(buckets[1], odd_names.thumbnails(mark))
    result = weed_invoke("run")
    assert result.exit_code == 0, result.stderr
    assets, space = odd_names.figures(conn)
    assert assets == {odd_names.asset_of(m): odd_names.ASSET_FIGURES for m in MARKS.values()}
    assert space == [(len(MARKS), len(MARKS) * 120, len(MARKS) * 7)]


def test_an_asset_run_as_asked_in_a_key_with_a_plus_is_a_listing_of_that_key(
    register: Callable[..., None], weed_put: Callable[..., None], buckets: tuple[str, str],
    weed_settings: Settings, conn: Conn, through_proxy: S3Proxy,
) -> None:  # fmt: skip
    """`a+b` and `a b` are two assets: neither is taken for the other."""
    register("2/5/a+b", "2/5/a b")
    weed_put(buckets[0], {"2/5/a+b": 1, "2/5/a b": 2, "2/5/a b/x": 4})
    report = calculator.run(weed_settings, make_s3_client(4), Scope(asset=AssetKey(2, 5, "a b")))
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn)[0] == {"2/5/a b": (6, 0)}


def test_ranges_that_start_after_every_kind_of_name_count_each_key_once(
    register: Callable[..., None], weed_put: Callable[..., None], buckets: tuple[str, str],
    weed_settings: Settings, conn: Conn, through_proxy: S3Proxy,
) -> None:  # fmt: skip
    """One registered asset per key range, so that every range but the first is listed with a
    `StartAfter` holding one of the names."""
    weed_settings = tuned(weed_settings, registry_slice=1)
    register(*(odd_names.asset_of(mark) for mark in MARKS.values()))
    for mark in MARKS.values():
        weed_put(buckets[0], odd_names.artefacts(mark))
        weed_put(buckets[1], odd_names.thumbnails(mark))
    report = calculator.run(weed_settings, make_s3_client(4))
    assert report.outcome == "done", report.error_summary
    assets, _ = odd_names.figures(conn)
    assert assets == {odd_names.asset_of(m): odd_names.ASSET_FIGURES for m in MARKS.values()}
    assert (report.orphan_objects, report.orphan_bytes) == (len(MARKS), len(MARKS) * 3)
    assert (report.unattributed_objects, report.unattributed_bytes) == (
        len(MARKS) * 2, len(MARKS) * 9
    )  # fmt: skip


def test_a_billable_run_lists_the_versions_and_uploads_of_every_kind_of_name(
    mark: str, weed_settings: Settings, conn: Conn, through_proxy: S3Proxy
) -> None:
    report = calculator.run(replace(weed_settings, billable=True), make_s3_client(4))
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    (row,) = [b for b in report.billable or () if b.space == 5]
    # Both buckets: the asset's two objects, the orphan and the thumbnail.
    assert (row.current_objects, row.current_bytes) == (4, 100 + 20 + 3 + 7)
