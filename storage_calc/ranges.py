"""Key ranges inside a space, so that one large space is listed by many requests at once and
attributed a bounded slice of its registry at a time. Pure: no I/O.

A range holds the keys of a space whose asset name (the segment after `{customer}/{space}/`)
is after `after` and at most `upto`. Every key of an asset falls in the range of its name, so a
range needs only the registered assets of its own names, and the ranges of a space share no key.

The range's listing starts at `StartAfter={space}{after}` and is cut at the first key whose name
is beyond `upto`. Servers return keys in one of two orders (research on S3 servers): UTF-8 byte
order (S3, moto), where `foo-2` sorts between `foo` and `foo/original`, and directory-tree order
(SeaweedFS), where an asset's keys follow its own key and `StartAfter=foo` skips `foo/...`.
In tree order the cut misses nothing. In byte order it can miss the keys `{n}/...` of a name `n`
that is `upto` itself or a prefix of `upto` followed by a character below `/` (`foo` for an
`upto` of `foo-2`), because they sort after names beyond `upto`; those keys, in either order,
come as one block, so a range lists `{space}{n}/` on its own for each such name whose block the
main listing neither showed nor ran past.

Where a range's listing was cut tells which names after it hold no key (`EmptyBeyond`), so the
later ranges among them are not listed at all.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeyRange:
    """The keys of a space whose asset name is after `after` and at most `upto`; None leaves
    that end open."""

    after: str | None = None
    upto: str | None = None

    def holds(self, name: str) -> bool:
        above = self.after is None or name > self.after
        return above and (self.upto is None or name <= self.upto)

    def straddling_names(self) -> tuple[str, ...]:
        """The names in the range whose `{name}/...` keys can sort, in byte order, after the
        first name beyond `upto`: `upto` and its prefixes followed by a character below `/`."""
        if self.upto is None:
            return ()
        head = self.upto.split("/", 1)[0]
        names = list(prefixes_before_low_characters(head))
        if head == self.upto:
            names.append(head)
        return tuple(name for name in names if self.holds(name))


def prefixes_before_low_characters(name: str) -> Iterator[str]:
    """The prefixes of `name` followed in it by a character below `/`: the names whose `/...`
    keys sort after `name` in byte order (`foo` for `foo-2`)."""
    return (name[:i] for i in range(len(name)) if name[i] < "/")


@dataclass(frozen=True)
class Slice:
    """Registered assets of one space (`id -> space`) and the key range their names cover."""

    space: int
    key_range: KeyRange
    assets: dict[str, int] = field(default_factory=dict)


def asset_name(asset_id: str) -> str:
    """The name of an asset id `c/s/name`."""
    return asset_id.split("/", 2)[2]


def registry_slices(rows: Iterable[tuple[str, int]], size: int) -> Iterator[Slice]:
    """Cuts registered assets (id, space), sorted by space and then by id in UTF-8 byte order,
    into slices of at most `size` assets each. A slice's range ends at its last asset's name;
    the first slice of a space starts at its beginning and the last one runs to its end."""
    batch: dict[str, int] = {}
    space: int | None = None
    after: str | None = None
    last = ""
    for asset_id, asset_space in rows:
        if batch and asset_space != space:
            assert space is not None
            yield Slice(space, KeyRange(after, None), batch)
            batch, after = {}, None
        elif len(batch) == size:
            assert space is not None
            upto = asset_name(last)
            yield Slice(space, KeyRange(after, upto), batch)
            batch, after = {}, upto
        space, last = asset_space, asset_id
        batch[asset_id] = asset_space
    if batch:
        assert space is not None
        yield Slice(space, KeyRange(after, None), batch)


@dataclass
class RangeCut:
    """Keeps, page by page, the keys of a listing under `prefix` (a space's) that belong to
    `key_range`, and notes which straddling names' `/...` blocks it has shown."""

    prefix: str
    key_range: KeyRange
    done: bool = False
    shown: set[str] = field(default_factory=set)
    # The key (after `prefix`) at which the listing was cut, once `done`.
    stop: str | None = None

    def __post_init__(self) -> None:
        self._straddling = frozenset(self.key_range.straddling_names())

    @property
    def start_after(self) -> str | None:
        after = self.key_range.after
        return None if after is None else self.prefix + after

    def take(self, objects: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """The objects of one page in the range; sets `done` at the first name beyond it, after
        which nothing more of the listing belongs to the range."""
        cut, upto, key_range = len(self.prefix), self.key_range.upto, self.key_range
        kept = []
        for key, size in objects:
            name, slash, _ = key[cut:].partition("/")
            if upto is not None and name > upto:
                self.done, self.stop = True, key[cut:]
                break
            if key_range.holds(name):
                if slash and name in self._straddling:
                    self.shown.add(name)
                kept.append((key, size))
        return kept

    def unshown(self) -> list[str]:
        """The prefixes (`{space}{name}/`) still to list once the main listing is over: those of
        straddling names whose `/...` keys it did not show and may not have reached. A listing
        that ran to the end of the space, or was cut at a key after every `{name}/...` key
        (from `{name}0` on, `0` being the character after `/`), showed them all if there were
        any."""
        stop = self.stop
        if stop is None:
            return []
        names = sorted(self._straddling - self.shown)
        return [self.prefix + name + "/" for name in names if stop < name + "0"]

    def gap(self) -> tuple[str, str | None] | None:
        """Names after `upto` that hold no key in this listing's location, as (after, before):
        up to the end of the space if the listing ran to it, else up to the name it was cut at.
        None for a range open at its end."""
        upto = self.key_range.upto
        if upto is None:
            return None
        return upto, None if self.stop is None else self.stop.partition("/")[0]


class EmptyBeyond:
    """Names of a space without keys, per bucket, learnt from the ranges already listed, so that
    later ranges inside them need not be listed: millions of registered assets without objects
    then cost a request per range in flight, not per range. Shared by the ranges of a customer,
    listed at once.

    A listing cut at the name `before` shows that no name between its range's `upto` and
    `before` has a key, except, in byte order, the `{m}/...` keys of a prefix `m` of `before`
    followed by a character below `/` (`foo` for `foo-2`), which sort after the cut: a range
    that holds such a prefix is listed anyway. Of the gaps starting at or before a range, the
    one starting nearest to it reaches furthest, so only that one is looked at.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: dict[str, list[str]] = {}
        self._gaps: dict[str, dict[str, str | None]] = {}

    def note(self, where: str, gap: tuple[str, str | None]) -> None:
        """No name after `gap[0]` and before `gap[1]` (None: the end) has a key in `where` (a
        bucket and a space's prefix)."""
        after, before = gap
        with self._lock:
            gaps = self._gaps.setdefault(where, {})
            if after not in gaps:
                bisect.insort(self._starts.setdefault(where, []), after)
            gaps[after] = before

    def covers(self, where: str, key_range: KeyRange) -> bool:
        """Whether `key_range` of `where` is known to hold no key."""
        if key_range.after is None:
            return False
        with self._lock:
            starts = self._starts.get(where, [])
            at = bisect.bisect_right(starts, key_range.after) - 1
            if at < 0:
                return False
            before = self._gaps[where][starts[at]]
        if before is None:
            return True
        if key_range.upto is None or key_range.upto >= before:
            return False
        return not any(key_range.holds(name) for name in prefixes_before_low_characters(before))
