"""Plain values shared by every layer: no I/O, no third-party imports."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class LocationKind(enum.Enum):
    ARTEFACT = "artefact"
    THUMBNAIL = "thumbnail"


@dataclass(frozen=True)
class Location:
    """A bucket and key prefix ("" or ending in "/") holding one kind of object."""

    bucket: str
    prefix: str
    kind: LocationKind

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


@dataclass(frozen=True, order=True)
class AssetKey:
    """The identity of a registered asset; `id` is the `"Images"."Id"` and its storage key."""

    customer: int
    space: int
    asset: str

    @property
    def id(self) -> str:
        return f"{self.customer}/{self.space}/{self.asset}"


@dataclass(frozen=True)
class Scope:
    """What a run computes: every customer, one customer, one space or one asset."""

    customer: int | None = None
    space: int | None = None
    asset: AssetKey | None = None

    @property
    def kind(self) -> str:
        """`all`, `customer`, `space` or `asset`."""
        if self.asset is not None:
            return "asset"
        if self.space is not None:
            return "space"
        return "customer" if self.customer is not None else "all"

    def __str__(self) -> str:
        if self.asset is not None:
            return f"asset {self.asset.id}"
        if self.space is not None:
            return f"customer {self.customer} space {self.space}"
        if self.customer is not None:
            return f"customer {self.customer}"
        return "all"


@dataclass(frozen=True)
class Spaces:
    """The spaces of a customer that a run computes: `only` these, or every one but
    `excluded` (which another shard computes)."""

    only: frozenset[int] | None = None
    excluded: frozenset[int] = frozenset()

    def includes(self, space: int) -> bool:
        return (self.only is None or space in self.only) and space not in self.excluded

    @property
    def whole(self) -> bool:
        """Whether these are every space of the customer, none excluded: only then does a run
        also compute what lies outside any space."""
        return self.only is None and not self.excluded

    def params(self) -> dict[str, list[int] | None]:
        """The parameters `only` and `excluded` of the queries (PostgreSQL's and DuckDB's) that
        cover some spaces."""
        return {
            "only": None if self.only is None else sorted(self.only),
            "excluded": sorted(self.excluded),
        }

    @property
    def one(self) -> int | None:
        """The space, where there is only one."""
        return next(iter(self.only)) if self.only is not None and len(self.only) == 1 else None


@dataclass(frozen=True)
class Destination:
    """Where an S3 Inventory configuration writes its reports:
    `s3://bucket/prefix/{source_bucket}/{config_id}/`."""

    bucket: str
    prefix: str  # ends with `{source_bucket}/{config_id}/`
    source_bucket: str
    config_id: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: its spaces are drawn by `storage_calc.shards`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Layout:
    """The features of the platform's tables that change what the job writes, as the database's
    catalog shows them (LAYOUTS.md). The seed layout has none of them; the current one all."""

    # The customer-level row is at "Space" IS NULL and space 0 is a real space, the stub space;
    # without it the customer-level row is at "Space" = 0 and no asset lives in space 0.
    customer_row_at_null: bool = False
    # "ImageStorage"."AdjunctSize" holds the bytes under {id}/adjuncts/, apart from "Size".
    asset_adjuncts: bool = False
    # "CustomerStorage" has "NumberOfStoredAdjuncts" and "TotalSizeOfStoredAdjuncts".
    space_adjuncts: bool = False

    @property
    def name(self) -> str:
        """`seed`, `seed with adjuncts` or `current` for the layouts met in the field."""
        if self.customer_row_at_null:
            return "current" if self.space_adjuncts else "current without adjunct totals"
        return "seed with adjuncts" if self.asset_adjuncts else "seed"

    @property
    def customer_space(self) -> int | None:
        """The `"Space"` of the customer-level row."""
        return None if self.customer_row_at_null else 0

    @property
    def first_space(self) -> int:
        """The lowest space that holds assets: 0 where space 0 is the stub space."""
        return 0 if self.customer_row_at_null else 1


@dataclass(frozen=True)
class Figures:
    """The figures of a `CustomerStorage` row; the adjunct ones are None where the layout has
    no adjunct columns."""

    number_of_stored_images: int = 0
    total_size_of_stored_images: int = 0
    total_size_of_thumbnails: int = 0
    number_of_stored_adjuncts: int | None = None
    total_size_of_stored_adjuncts: int | None = None

    def __sub__(self, other: Figures) -> Figures:
        return Figures(
            self.number_of_stored_images - other.number_of_stored_images,
            self.total_size_of_stored_images - other.total_size_of_stored_images,
            self.total_size_of_thumbnails - other.total_size_of_thumbnails,
            _difference(self.number_of_stored_adjuncts, other.number_of_stored_adjuncts),
            _difference(self.total_size_of_stored_adjuncts, other.total_size_of_stored_adjuncts),
        )

    def as_json(self) -> dict[str, int]:
        figures = {
            "numberOfStoredImages": self.number_of_stored_images,
            "totalSizeOfStoredImages": self.total_size_of_stored_images,
            "totalSizeOfThumbnails": self.total_size_of_thumbnails,
            "numberOfStoredAdjuncts": self.number_of_stored_adjuncts,
            "totalSizeOfStoredAdjuncts": self.total_size_of_stored_adjuncts,
        }
        return {key: value for key, value in figures.items() if value is not None}


def _difference(after: int | None, before: int | None) -> int | None:
    if after is None and before is None:
        return None
    return (after or 0) - (before or 0)


@dataclass(frozen=True)
class ScopeChange:
    """A `CustomerStorage` row whose figures a run changed. `space` is the row's `"Space"` as
    the layout stores it: for the customer-level row 0 in the seed layout, None in the current
    one, where 0 is the stub space."""

    customer: int
    space: int | None
    before: Figures
    after: Figures
    customer_row: bool = False

    @property
    def delta(self) -> Figures:
        return self.after - self.before

    def as_json(self) -> dict[str, object]:
        return {
            "customer": self.customer,
            "space": self.space,
            "before": self.before.as_json(),
            "after": self.after.as_json(),
            "delta": self.delta.as_json(),
        }


@dataclass(frozen=True, kw_only=True)
class SpaceOrphans:
    """Objects in a space that match the key grammar but belong to no registered asset."""

    customer: int
    space: int
    objects: int
    bytes: int
    assets: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class ScopeSums:
    """What the objects of a customer's scope add up to, besides its per-asset figures: all
    of them, the unattributed ones, and the orphans of each space."""

    objects: int
    bytes: int
    unattributed_objects: int
    unattributed_bytes: int
    orphans: tuple[SpaceOrphans, ...]


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    LOCKED = "locked"


@dataclass(frozen=True)
class Misfiled:
    """The `"Images"` rows filed under a scope whose Id names another customer or space than
    their own `"Customer"` and `"Space"`: counted in no figure, reported with a few ids."""

    count: int = 0
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Billable:
    """What S3 bills for the keys of one customer's space (`space` None: the keys under the
    customer's prefix outside any space). `by_storage_class` maps each storage class to the
    bytes of the current versions in it."""

    customer: int
    space: int | None
    current_objects: int
    current_bytes: int
    billed_bytes: int
    noncurrent_versions: int
    noncurrent_bytes: int
    delete_markers: int
    incomplete_uploads: int
    incomplete_upload_bytes: int
    oldest_upload: datetime | None
    by_storage_class: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class CustomerResult:
    """What computing one customer (or one of its spaces or assets) gave."""

    customer: int
    outcome: Outcome
    objects: int = 0
    bytes: int = 0
    assets: int = 0
    unattributed_objects: int = 0
    unattributed_bytes: int = 0
    orphans: tuple[SpaceOrphans, ...] = ()
    changes: tuple[ScopeChange, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    misfiled: Misfiled = field(default_factory=Misfiled)
    # What S3 bills for the customer, per space, where the run computed it; None where not.
    billable: tuple[Billable, ...] | None = None

    @property
    def orphan_objects(self) -> int:
        return sum(o.objects for o in self.orphans)

    @property
    def orphan_bytes(self) -> int:
        return sum(o.bytes for o in self.orphans)

    def counts(self) -> dict[str, object]:
        """The figures of its log event."""
        return {
            "outcome": self.outcome.value,
            "objects": self.objects,
            "bytes": self.bytes,
            "assets": self.assets,
            "orphans": self.orphan_objects,
            "orphan_bytes": self.orphan_bytes,
            "unattributed": self.unattributed_objects,
            "misfiled": self.misfiled.count,
            "changes": len(self.changes),
            "error": self.error,
        }


@dataclass(frozen=True)
class Uncounted:
    """A prefix outside every customer that could not be listed (`s3://bucket/prefix`), and
    why."""

    prefix: str
    error: str


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """The outcome of one run over a scope."""

    scope: Scope
    shard: Shard | None
    dry_run: bool
    started: datetime
    finished: datetime
    customers: tuple[CustomerResult, ...] = ()
    unattributed_objects: int = 0
    unattributed_bytes: int = 0
    error: str | None = field(default=None)
    interrupted: bool = False
    layout: Layout | None = None
    run_id: int | None = None
    # The prefixes outside every customer that could not be listed: the unattributed figures
    # are short of whatever they hold.
    uncounted: tuple[Uncounted, ...] = ()
    # Database connections opened again because one broke during the run.
    reconnections: int = 0

    def _total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.customers)

    @property
    def objects(self) -> int:
        return self._total("objects") + self.unattributed_objects

    @property
    def bytes(self) -> int:
        return self._total("bytes") + self.unattributed_bytes

    @property
    def assets(self) -> int:
        return self._total("assets")

    @property
    def orphan_objects(self) -> int:
        return self._total("orphan_objects")

    @property
    def orphan_bytes(self) -> int:
        return self._total("orphan_bytes")

    @property
    def unattributed(self) -> int:
        return self._total("unattributed_objects") + self.unattributed_objects

    @property
    def billable(self) -> tuple[Billable, ...] | None:
        """The billable rows of the customers whose billable bytes the run computed; None if
        it computed none."""
        computed = [c.billable for c in self.customers if c.billable is not None]
        return tuple(row for rows in computed for row in rows) if computed else None

    @property
    def misfiled(self) -> int:
        return sum(c.misfiled.count for c in self.customers)

    @property
    def changes(self) -> tuple[ScopeChange, ...]:
        return tuple(change for c in self.customers for change in c.changes)

    @property
    def drift_bytes(self) -> int:
        """How far the customer totals were from the truth: the sum over the changed customer
        rows of the absolute change of their stored, thumbnail and adjunct bytes."""
        return sum(
            abs(c.delta.total_size_of_stored_images)
            + abs(c.delta.total_size_of_thumbnails)
            + abs(c.delta.total_size_of_stored_adjuncts or 0)
            for c in self.changes
            if c.customer_row
        )

    @property
    def uncounted_error(self) -> str | None:
        """What the unattributed figures lack, if some prefix could not be listed."""
        if not self.uncounted:
            return None
        errors = "; ".join(u.error for u in self.uncounted)
        return f"the unattributed figures are incomplete: {errors}"

    @property
    def error_summary(self) -> str | None:
        """The run's error, or else the errors of its failed customers, one per customer, and
        the prefixes outside every customer it could not count."""
        if self.error is not None:
            return self.error
        errors = [f"customer {c.customer}: {c.error}" for c in self.with_outcome(Outcome.FAILED)]
        if self.uncounted_error is not None:
            errors.append(self.uncounted_error)
        return "; ".join(errors) or None

    def with_outcome(self, outcome: Outcome) -> tuple[CustomerResult, ...]:
        return tuple(c for c in self.customers if c.outcome is outcome)

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.error is not None or self.with_outcome(Outcome.FAILED) or self.uncounted:
            return "failed"
        if self.customers and len(self.with_outcome(Outcome.LOCKED)) == len(self.customers):
            return "locked"
        return "done"

    def counts(self) -> dict[str, object]:
        """The figures of its summary log event."""
        return {
            "outcome": self.outcome,
            "customers": len(self.customers),
            "failed": len(self.with_outcome(Outcome.FAILED)),
            "locked": len(self.with_outcome(Outcome.LOCKED)),
            "objects": self.objects,
            "bytes": self.bytes,
            "assets": self.assets,
            "orphans": self.orphan_objects,
            "orphan_bytes": self.orphan_bytes,
            "unattributed": self.unattributed,
            "misfiled": self.misfiled,
            "changes": len(self.changes),
            "drift_bytes": self.drift_bytes,
            "error": self.error,
        }

    @property
    def duration_seconds(self) -> float:
        return (self.finished - self.started).total_seconds()


@dataclass(frozen=True)
class CustomerStorageRow:
    """A `"CustomerStorage"` row: the customer-level row at space 0 in the seed layout, at
    space None in the current one. The adjunct figures are None where the layout has none."""

    customer: int
    space: int | None
    storage_policy: str | None
    number_of_stored_images: int
    total_size_of_stored_images: int
    total_size_of_thumbnails: int
    last_calculated: datetime | None
    number_of_stored_adjuncts: int | None = None
    total_size_of_stored_adjuncts: int | None = None

    @property
    def figures(self) -> Figures:
        return Figures(
            self.number_of_stored_images,
            self.total_size_of_stored_images,
            self.total_size_of_thumbnails,
            self.number_of_stored_adjuncts,
            self.total_size_of_stored_adjuncts,
        )


@dataclass(frozen=True)
class ImageStorageRow:
    """An `"ImageStorage"` row."""

    id: str
    customer: int
    space: int
    thumbnail_size: int
    size: int
    last_checked: datetime | None
    checking_in_progress: bool
    adjunct_size: int | None = None

    @property
    def asset(self) -> str:
        return self.id.split("/", 2)[2]


@dataclass(frozen=True)
class StoragePolicyRow:
    """A `"StoragePolicies"` row."""

    id: str
    maximum_number_of_stored_images: int
    maximum_total_size_of_stored_images: int


@dataclass(frozen=True)
class Migration:
    """A version of the project's own schema: `sql/migrations/{version:04d}_{name}.sql`."""

    version: int
    name: str


@dataclass(frozen=True, kw_only=True)
class SchemaStatus:
    """What `db status` shows: the platform's tables and their layout (or why the job cannot
    write it), and the versions of the project's schema, applied and to apply."""

    platform_tables: tuple[str, ...]
    layout: Layout | None
    layout_error: str | None
    has_schema: bool
    applied: tuple[int, ...]
    pending: tuple[Migration, ...]


@dataclass(frozen=True)
class PrunedFigures:
    """What `prune_figures` did: the steps and commits from before `before` it deleted, and
    the steps it kept from before then (the latest of each of `kept_spaces`)."""

    before: datetime
    deleted_steps: int
    deleted_commits: int
    kept_steps: int
    kept_spaces: int
