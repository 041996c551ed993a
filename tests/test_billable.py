"""What S3 bills for storage: billed sizes per storage class, and the tally of versions, delete
markers and unfinished uploads per customer and space. Pure: no S3, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage_calc.billable import BillableTally, billed_size, billing_classes
from tests.conftest import billable_row as row

KIB = 1024
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize("storage_class", [None, "STANDARD", "INTELLIGENT_TIERING"])
def test_standard_classes_bill_the_size(storage_class: str | None) -> None:
    assert billed_size(1, storage_class) == 1


@pytest.mark.parametrize("storage_class", ["STANDARD_IA", "ONEZONE_IA", "GLACIER_IR"])
def test_infrequent_access_classes_bill_at_least_128_kib(storage_class: str) -> None:
    assert billed_size(1, storage_class) == 128 * KIB
    assert billed_size(200 * KIB, storage_class) == 200 * KIB


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_archive_classes_add_40_kib_to_every_object(storage_class: str) -> None:
    assert billed_size(1, storage_class) == 1 + 40 * KIB
    assert billed_size(200 * KIB, storage_class) == 240 * KIB


def test_a_key_in_a_space_goes_to_its_customer_and_space() -> None:
    tally = BillableTally()
    tally.add_version("2/5/not-registered/original", 10, None, True, False)
    assert tally.rows() == [
        row(2, 5, current_objects=1, current_bytes=10, billed_bytes=10,
            by_storage_class={"STANDARD": 10}),
    ]  # fmt: skip


def test_a_key_under_a_customer_but_in_no_space_goes_to_the_customer_alone() -> None:
    tally = BillableTally()
    tally.add_version("2/pdf/report.pdf", 3, None, True, False)
    tally.add_version("2/05/x", 4, None, True, False)
    assert [(r.customer, r.space, r.current_bytes) for r in tally.rows()] == [(2, None, 7)]


def test_keys_under_no_customer_are_only_counted() -> None:
    tally = BillableTally()
    tally.add_version("transient/2/5/x", 3, None, True, False)
    tally.add_version("2", 4, "STANDARD_IA", True, False)
    assert tally.rows() == []
    assert (tally.outside_entries, tally.outside_billed_bytes) == (2, 3 + 128 * KIB)


def test_noncurrent_versions_are_billed_but_not_current() -> None:
    tally = BillableTally()
    tally.add_version("2/5/a", 100, None, True, False)
    tally.add_version("2/5/a", 60, "STANDARD_IA", False, False)
    assert tally.rows() == [
        row(2, 5, current_objects=1, current_bytes=100, noncurrent_versions=1,
            noncurrent_bytes=60, billed_bytes=100 + 128 * KIB, by_storage_class={"STANDARD": 100}),
    ]  # fmt: skip


def test_a_delete_marker_is_counted_and_hides_its_key_and_adds_no_bytes() -> None:
    tally = BillableTally()
    tally.add_version("2/5/a", 0, None, True, True)
    tally.add_version("2/5/a", 100, None, False, False)
    assert tally.rows() == [
        row(2, 5, delete_markers=1, noncurrent_versions=1, noncurrent_bytes=100,
            billed_bytes=100),
    ]  # fmt: skip


def test_current_bytes_are_kept_per_storage_class() -> None:
    tally = BillableTally()
    tally.add_version("2/5/a", 100, None, True, False)
    tally.add_version("2/5/b", 200, "GLACIER", True, False)
    tally.add_version("2/5/c", 300, "STANDARD", True, False)
    [found] = tally.rows()
    assert found.by_storage_class == {"GLACIER": 200, "STANDARD": 400}
    assert found.billed_bytes == 600 + 40 * KIB


def test_unfinished_uploads_are_billed_with_the_oldest_start() -> None:
    tally = BillableTally()
    tally.add_upload("2/5/big", 7, FEB)
    tally.add_upload("2/5/big", 5, JAN)
    assert tally.rows() == [
        row(2, 5, incomplete_uploads=2, incomplete_upload_bytes=12, billed_bytes=12,
            oldest_upload=JAN),
    ]  # fmt: skip


def test_rows_are_sorted_by_customer_then_space_with_no_space_first() -> None:
    tally = BillableTally()
    for key in ("10/1/a", "2/7/a", "2/x", "2/5/a"):
        tally.add_version(key, 1, None, True, False)
    assert [(r.customer, r.space) for r in tally.rows()] == [(2, None), (2, 5), (2, 7), (10, 1)]


def test_merged_tallies_sum_like_one() -> None:
    one, two, both = BillableTally(), BillableTally(), BillableTally()
    entries = [("2/5/a", 10, None, True), ("2/5/a", 4, "GLACIER", False), ("x", 1, None, True)]
    for i, (key, size, cls, latest) in enumerate(entries):
        (one if i % 2 else two).add_version(key, size, cls, latest, False)
        both.add_version(key, size, cls, latest, False)
    one.add_upload("2/5/u", 3, FEB)
    two.add_upload("2/6/u", 3, JAN)
    both.add_upload("2/5/u", 3, FEB)
    both.add_upload("2/6/u", 3, JAN)
    one.merge(two)
    assert one.rows() == both.rows()
    assert (one.outside_entries, one.outside_billed_bytes) == (1, 1)


def test_sums_made_elsewhere_add_up_like_single_versions() -> None:
    one_by_one, summed = BillableTally(), BillableTally()
    for size in (1, 200 * KIB):
        one_by_one.add_version("2/5/a", size, "GLACIER_IR", False, False)
    one_by_one.add_version("2/5/a", 0, None, True, True)
    summed.add_versions((2, 5), "GLACIER_IR", False, False, 2, 1 + 200 * KIB, 328 * KIB)
    summed.add_versions((2, 5), None, True, True, 1, 0, 0)
    assert summed.rows() == one_by_one.rows()


def test_billing_classes_give_each_class_its_minimum_and_overhead() -> None:
    assert billing_classes() == {
        "DEEP_ARCHIVE": (0, 40 * KIB), "GLACIER": (0, 40 * KIB), "GLACIER_IR": (128 * KIB, 0),
        "ONEZONE_IA": (128 * KIB, 0), "STANDARD_IA": (128 * KIB, 0),
    }  # fmt: skip
