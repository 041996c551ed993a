"""Streaming attribution of listed objects to registered assets. Pure: no I/O.

A `Tally` keeps one triple of sums per asset it has seen and one summary per space of orphans,
so its memory grows with the registered assets it is given (one key range's slice of a space),
never with the objects listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from storage_calc.keys import is_adjunct, owner_id
from storage_calc.model import LocationKind, ScopeSums, SpaceOrphans

ORPHAN_EXAMPLES = 5
# Distinct orphan asset ids are counted exactly up to this many per space, so that millions of
# orphans under one prefix cannot exhaust memory; beyond it the count stays at the cap.
ORPHAN_ASSETS_COUNTED = 100_000


@dataclass
class OrphanTally:
    """The orphans of one space. `examples` maps the orphan assets whose URLs come first (at
    most ORPHAN_EXAMPLES) to their URL, `s3://bucket/prefix/{id}` in the first location (by
    URL) that holds keys of theirs: the examples name different assets and do not depend on
    listing order."""

    objects: int = 0
    bytes: int = 0
    assets: set[str] = field(default_factory=set)
    examples: dict[str, str] = field(default_factory=dict)

    def note_example(self, asset_id: str, location: str) -> None:
        examples = self.examples
        known = examples.get(asset_id)
        if known is not None:
            examples[asset_id] = min(known, location)
        elif len(examples) < ORPHAN_EXAMPLES:
            examples[asset_id] = location
        else:
            # An asset left out has a URL after those of the assets kept, which only ever come
            # earlier: only an earlier URL of its own brings it back.
            last = max(examples, key=examples.__getitem__)
            if location < examples[last]:
                del examples[last]
                examples[asset_id] = location

    def merge(self, other: OrphanTally) -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.assets |= other.assets
        for asset_id, location in other.examples.items():
            self.note_example(asset_id, location)


@dataclass
class Tally:
    """Sums of the objects listed for one customer, attributed as they stream in.

    `registry` maps each registered asset id (`c/s/asset`) to its space. `sizes[id]` is
    `[artefact bytes, thumbnail bytes, adjunct bytes]`; orphans are summarised per (customer,
    space). With `stub_space`, keys in space 0 are attributed like any other; with
    `split_adjuncts`, the artefact keys under `{id}/adjuncts/` are adjunct bytes, else artefacts.
    """

    registry: Mapping[str, int]
    stub_space: bool = False
    split_adjuncts: bool = False
    objects: int = 0
    bytes: int = 0
    unattributed_objects: int = 0
    unattributed_bytes: int = 0
    sizes: dict[str, list[int]] = field(default_factory=dict)
    orphans: dict[tuple[int, int], OrphanTally] = field(default_factory=dict)

    def add(
        self, kind: LocationKind, bucket: str, prefix: str, objects: Iterable[tuple[str, int]]
    ) -> None:
        """Attributes `objects` (full keys, sizes) listed in `bucket` under location `prefix`."""
        column = 0 if kind is LocationKind.ARTEFACT else 1
        split = self.split_adjuncts and kind is LocationKind.ARTEFACT
        cut = len(prefix)
        registry, sizes, stub_space = self.registry, self.sizes, self.stub_space
        for key, size in objects:
            self.objects += 1
            self.bytes += size
            relative = key[cut:]
            asset_id = owner_id(relative, stub_space)
            if asset_id is None:
                self.unattributed_objects += 1
                self.unattributed_bytes += size
            elif asset_id in registry:
                triple = sizes.get(asset_id)
                if triple is None:
                    triple = sizes[asset_id] = [0, 0, 0]
                triple[2 if split and is_adjunct(relative, asset_id) else column] += size
            else:
                self._add_orphan(asset_id, f"s3://{bucket}/{prefix}{asset_id}", size)

    def _add_orphan(self, asset_id: str, location: str, size: int) -> None:
        customer, space, _ = asset_id.split("/", 2)
        orphan = self.orphans.setdefault((int(customer), int(space)), OrphanTally())
        orphan.objects += 1
        orphan.bytes += size
        if len(orphan.assets) < ORPHAN_ASSETS_COUNTED:
            orphan.assets.add(asset_id)
        orphan.note_example(asset_id, location)

    def merge(self, other: Tally) -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.unattributed_objects += other.unattributed_objects
        self.unattributed_bytes += other.unattributed_bytes
        for asset_id, figures in other.sizes.items():
            triple = self.sizes.setdefault(asset_id, [0, 0, 0])
            for column, value in enumerate(figures):
                triple[column] += value
        for space, orphan in other.orphans.items():
            self.orphans.setdefault(space, OrphanTally()).merge(orphan)

    def asset_rows(self) -> Iterator[tuple[str, int, int, int, int]]:
        """(id, space, size, thumbnail size, adjunct size) of every registered asset, 0 for
        those unseen."""
        for asset_id, space in self.registry.items():
            size, thumbs, adjuncts = self.sizes.get(asset_id, (0, 0, 0))
            yield asset_id, space, size, thumbs, adjuncts

    def space_orphans(self) -> tuple[SpaceOrphans, ...]:
        return tuple(
            SpaceOrphans(
                customer=c,
                space=s,
                objects=o.objects,
                bytes=o.bytes,
                assets=min(len(o.assets), ORPHAN_ASSETS_COUNTED),
                examples=tuple(sorted(o.examples.values())),
            )
            for (c, s), o in sorted(self.orphans.items())
        )

    def sums(self) -> ScopeSums:
        return ScopeSums(
            self.objects,
            self.bytes,
            self.unattributed_objects,
            self.unattributed_bytes,
            self.space_orphans(),
        )
