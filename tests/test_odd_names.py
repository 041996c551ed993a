"""Keys with `+`, `%`, spaces, `%2B` spelled out, non-ASCII letters and characters XML 1.0
cannot carry are attributed exactly in every role, by every kind of run, on moto."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import AssetKey, Scope
from storage_calc.sources.listing import S3Client
from tests import odd_names
from tests.conftest import STORAGE, THUMBS
from tests.odd_names import MARKS
from tests.test_inventory_run import inventory_settings

Conn = psycopg.Connection[Any]


def holding(mark: str, register: Callable[..., None], put: Callable[..., None]) -> str:
    """Puts and registers the objects of `mark` in every role; returns it."""
    register(odd_names.asset_of(mark))
    put(STORAGE, odd_names.artefacts(mark))
    put(THUMBS, odd_names.thumbnails(mark))
    return mark


@pytest.fixture(params=MARKS.values(), ids=MARKS.keys())
def mark(
    request: pytest.FixtureRequest, register: Callable[..., None], put: Callable[..., None]
) -> str:
    return holding(request.param, register, put)


def test_a_full_run_attributes_every_role(
    mark: str, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(settings, s3)
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report) == (odd_names.ORPHAN, odd_names.OUTSIDE)


def test_a_run_of_the_space_attributes_its_roles(
    mark: str, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(settings, s3, Scope(customer=2, space=5))
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report)[0] == odd_names.ORPHAN


def test_a_run_of_the_asset_counts_its_key_and_the_objects_under_it(
    mark: str, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(settings, s3, Scope(asset=AssetKey(2, 5, f"a{mark}b")))
    assert report.outcome == "done", report.error_summary
    assets, _ = odd_names.figures(conn)
    assert assets == {odd_names.asset_of(mark): odd_names.ASSET_FIGURES}


def test_a_run_from_inventories_attributes_every_role(
    mark: str, settings: Settings, inventory_s3: S3Client, conn: Conn
) -> None:
    report = calculator.run(inventory_settings(settings, inventory_s3), inventory_s3)
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    assert odd_names.orphans_and_outside(report) == (odd_names.ORPHAN, odd_names.OUTSIDE)


# moto's ListObjectVersions ignores EncodingType=url and writes a control character into its
# XML as it is, which no XML parser reads: AWS S3 and SeaweedFS encode it, and
# integration/test_odd_names_seaweedfs.py lists it there.
IN_XML = {label: mark for label, mark in MARKS.items() if label != "not in xml"}


@pytest.fixture(params=IN_XML.values(), ids=IN_XML.keys())
def xml_mark(
    request: pytest.FixtureRequest, register: Callable[..., None], put: Callable[..., None]
) -> str:
    return holding(request.param, register, put)


def test_a_billable_run_lists_the_versions_and_uploads_of_every_kind_of_name(
    xml_mark: str, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    mark = xml_mark
    report = calculator.run(replace(settings, billable=True), s3)
    assert report.outcome == "done", report.error_summary
    assert odd_names.figures(conn) == odd_names.attributed(mark)
    (row,) = [b for b in report.billable or () if b.space == 5]
    # Both buckets: the asset's two objects, the orphan and the thumbnail.
    assert (row.current_objects, row.current_bytes) == (4, 100 + 20 + 3 + 7)
