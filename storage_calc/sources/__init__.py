"""Where a run's objects come from, behind one interface, `Source`: the buckets' listings
(`walk.Listing`: ListObjectsV2 in `listing`, versions and uploads in `versions`) or their S3
Inventory reports (`inventory_source.Inventory`: the reports found and checked in `inventory`,
summed by DuckDB in `inventory_sums`). The calculator asks a source for what it needs and never
which kind it has.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from storage_calc import db
from storage_calc.errors import Interrupted
from storage_calc.model import AssetKey, Billable, ScopeSums, Spaces, Uncounted
from storage_calc.rollup import Tally


@dataclass
class Outside:
    """The keys outside every customer (`tally`) and the prefixes of them that could not be
    counted."""

    tally: Tally
    uncounted: list[Uncounted] = field(default_factory=list)


def check_stop(stop: threading.Event | None) -> None:
    """Raises Interrupted once `stop` is set: what every source does between two pages of a
    listing, so that a stop ends the customer in progress with nothing written."""
    if stop is not None and stop.is_set():
        raise Interrupted("interrupted before its figures were written")


class Source(Protocol):
    """What a run needs of where its objects come from."""

    def customers(self, outside: Outside | None) -> set[int]:
        """The customers that have keys; the keys outside every customer are added to
        `outside` where one is given (a run of every customer)."""
        ...

    def checked(self) -> datetime | None:
        """When the objects were seen, the `LastChecked` of every figure computed from them;
        None: when each customer's listing starts, by the database's clock."""
        ...

    def stage(
        self, conn: db.Connection, customer: int, spaces: Spaces, asset: AssetKey | None
    ) -> tuple[ScopeSums, int]:
        """Stages the per-asset figures of the customer's `spaces` (or of `asset`) on `conn`,
        whose staging table is ready; returns what its objects add up to and how many rows it
        staged (one per registered asset)."""
        ...

    def billable(self, customer: int, spaces: Spaces) -> tuple[Billable, ...]:
        """What S3 bills for the customer's `spaces` (see `storage_calc.billable`)."""
        ...
