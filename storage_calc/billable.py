"""What S3 bills for storage, per customer and space. Pure: no I/O.

A listing of current objects (ListObjectsV2) shows only part of what a versioned bucket is
billed for. The storage line of the bill (TimedStorage, per storage class) also counts
noncurrent versions, delete markers and the parts of unfinished multipart uploads, and it
counts small objects of some classes at more than their size. `BillableTally` sums all of it
from ListObjectVersions and ListMultipartUploads (or an inventory of all versions).

`billed_bytes` is one figure, the bytes of every storage class added together:
- every current and noncurrent version at `billed_size`: its size, raised to the class's
  minimum billable size (128 KiB for STANDARD_IA, ONEZONE_IA and GLACIER_IR), plus, for the
  archive classes GLACIER and DEEP_ARCHIVE, the 40 KiB S3 keeps per archived object (32 KiB
  billed at the class's rate and 8 KiB at the STANDARD rate, both counted here);
- the parts of unfinished multipart uploads at their size (no minimum applies to parts);
- delete markers at 0 bytes. S3 bills each marker as the UTF-8 length of its key name, tens
  of bytes, which the listing path does not pass to the tally; they are counted in
  `delete_markers` instead.

Keys are attributed by their first two segments, relative to the location's prefix:
`{customer}/{space}/...` to (customer, space) whether or not an asset there is registered,
`{customer}/anything-else` to (customer, None), both canonical integers (`keys.scope_of`).
Keys under no customer prefix (`transient/...`, `readme.txt`) belong to no row: they are only
counted in `outside_entries` and `outside_billed_bytes`, for the run to log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage_calc.keys import scope_of
from storage_calc.model import Billable, Spaces

STANDARD = "STANDARD"
KIB = 1024

# The classes that bill an object smaller than this as if it were this size.
MINIMUM_BILLED_SIZE: dict[str, int] = {
    "STANDARD_IA": 128 * KIB,
    "ONEZONE_IA": 128 * KIB,
    "GLACIER_IR": 128 * KIB,
}

# The archive classes add this much to every object, whatever its size: the index and
# metadata S3 keeps to restore it (32 KiB at the class's rate, 8 KiB at the STANDARD rate).
ARCHIVE_OVERHEAD: dict[str, int] = {
    "GLACIER": 40 * KIB,
    "DEEP_ARCHIVE": 40 * KIB,
}


def billing_classes() -> dict[str, tuple[int, int]]:
    """The classes billed otherwise than by size: class -> (minimum billed size, overhead
    added to every object), for sums made outside Python (an inventory summed in SQL)."""
    return {
        cls: (MINIMUM_BILLED_SIZE.get(cls, 0), ARCHIVE_OVERHEAD.get(cls, 0))
        for cls in sorted(MINIMUM_BILLED_SIZE.keys() | ARCHIVE_OVERHEAD.keys())
    }


def billed_size(size: int, storage_class: str | None) -> int:
    """The bytes S3 bills for one object or version of `size` bytes in `storage_class`
    (None, as servers answer for STANDARD, is STANDARD)."""
    cls = storage_class or STANDARD
    return max(size, MINIMUM_BILLED_SIZE.get(cls, 0)) + ARCHIVE_OVERHEAD.get(cls, 0)


@dataclass
class _Sums:
    current_objects: int = 0
    current_bytes: int = 0
    billed_bytes: int = 0
    noncurrent_versions: int = 0
    noncurrent_bytes: int = 0
    delete_markers: int = 0
    incomplete_uploads: int = 0
    incomplete_upload_bytes: int = 0
    oldest_upload: datetime | None = None
    by_storage_class: dict[str, int] = field(default_factory=dict)

    def merge(self, other: _Sums) -> None:
        for name in (
            "current_objects",
            "current_bytes",
            "billed_bytes",
            "noncurrent_versions",
            "noncurrent_bytes",
            "delete_markers",
            "incomplete_uploads",
            "incomplete_upload_bytes",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.oldest_upload is not None:
            self.add_upload_time(other.oldest_upload)
        for cls, size in other.by_storage_class.items():
            self.by_storage_class[cls] = self.by_storage_class.get(cls, 0) + size

    def add_upload_time(self, initiated: datetime) -> None:
        if self.oldest_upload is None or initiated < self.oldest_upload:
            self.oldest_upload = initiated


@dataclass
class BillableTally:
    """Sums of the versions and unfinished uploads listed for some customers, per (customer,
    space), as they stream in. Memory grows with the spaces seen, never with the keys."""

    sums: dict[tuple[int, int | None], _Sums] = field(default_factory=dict)
    outside_entries: int = 0
    outside_billed_bytes: int = 0

    def _sums(self, scope: tuple[int, int | None]) -> _Sums:
        sums = self.sums.get(scope)
        if sums is None:
            sums = self.sums[scope] = _Sums()
        return sums

    def add_version(
        self,
        key: str,
        size: int,
        storage_class: str | None,
        is_latest: bool,
        is_delete_marker: bool,
    ) -> None:
        """One version or delete marker of `key` (relative to its location's prefix). A
        current delete marker hides its key: no current object is counted for it."""
        billed = 0 if is_delete_marker else billed_size(size, storage_class)
        scope = scope_of(key)
        if scope is None:
            self.outside_entries += 1
            self.outside_billed_bytes += billed
            return
        self.add_versions(scope, storage_class, is_latest, is_delete_marker, 1, size, billed)

    def add_versions(
        self,
        scope: tuple[int, int | None],
        storage_class: str | None,
        is_latest: bool,
        is_delete_marker: bool,
        count: int,
        size: int,
        billed: int,
    ) -> None:
        """`count` versions (or delete markers) of (customer, space) `scope` in one storage
        class, of `size` bytes and `billed` billed bytes in all: what `add_version` adds one
        at a time, summed elsewhere (an inventory summed in SQL)."""
        sums = self._sums(scope)
        if is_delete_marker:
            sums.delete_markers += count
            return
        sums.billed_bytes += billed
        if is_latest:
            cls = storage_class or STANDARD
            sums.current_objects += count
            sums.current_bytes += size
            sums.by_storage_class[cls] = sums.by_storage_class.get(cls, 0) + size
        else:
            sums.noncurrent_versions += count
            sums.noncurrent_bytes += size

    def add_upload(self, key: str, size: int, initiated: datetime) -> None:
        """One unfinished multipart upload of `key` (relative to its location's prefix), whose
        uploaded parts hold `size` bytes, started at `initiated`."""
        scope = scope_of(key)
        if scope is None:
            self.outside_entries += 1
            self.outside_billed_bytes += size
            return
        sums = self._sums(scope)
        sums.incomplete_uploads += 1
        sums.incomplete_upload_bytes += size
        sums.billed_bytes += size
        sums.add_upload_time(initiated)

    def merge(self, other: BillableTally) -> None:
        for scope, sums in other.sums.items():
            self.sums.setdefault(scope, _Sums()).merge(sums)
        self.outside_entries += other.outside_entries
        self.outside_billed_bytes += other.outside_billed_bytes

    def rows(self) -> list[Billable]:
        """One row per (customer, space) seen, by customer, then space with None first."""
        return [
            Billable(
                customer=customer,
                space=space,
                current_objects=s.current_objects,
                current_bytes=s.current_bytes,
                billed_bytes=s.billed_bytes,
                noncurrent_versions=s.noncurrent_versions,
                noncurrent_bytes=s.noncurrent_bytes,
                delete_markers=s.delete_markers,
                incomplete_uploads=s.incomplete_uploads,
                incomplete_upload_bytes=s.incomplete_upload_bytes,
                oldest_upload=s.oldest_upload,
                by_storage_class=dict(sorted(s.by_storage_class.items())),
            )
            for (customer, space), s in sorted(self.sums.items(), key=_row_order)
        ]


def _row_order(item: tuple[tuple[int, int | None], _Sums]) -> tuple[int, int]:
    (customer, space), _ = item
    return customer, -1 if space is None else space


def in_scope(row: Billable, customer: int, spaces: Spaces) -> bool:
    """Whether `row` is one a run of `customer`'s `spaces` computes: the row of the keys outside
    any space belongs to a run of every space, none excluded."""
    if row.customer != customer:
        return False
    if row.space is None:
        return spaces.whole
    return spaces.includes(row.space)
