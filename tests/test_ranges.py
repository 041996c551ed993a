"""Key ranges inside a space: every key in exactly one range, on servers of either order."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import pytest

from storage_calc.ranges import EmptyBeyond, KeyRange, RangeCut, asset_name, registry_slices

PREFIX = "2/5/"
# Awkward names: a name that is a prefix of others followed by characters below and above "/",
# children without their parent's key, non-ASCII, and names of characters below "/" only.
NAMES = [
    "foo", "foo bar", "foo!x", "foo-2", "foo-2-a", "foo.z", "foo0", "fooA", "foo_u", "foo~",
    "fop", "image", "image-000001", "image-000002", "image-000010", "z", "~t", "é", "ü", "-",
    "--", "a", "a-", "a-b", "a.b",
]  # fmt: skip
CHILDREN = ["", "/a", "/b/c", "/original", "/adjuncts/x.pdf"]


def byte_order(keys: list[str], start_after: str | None) -> list[str]:
    """S3 and moto: UTF-8 byte order, StartAfter excludes keys up to it."""
    return sorted(k for k in keys if start_after is None or k > start_after)


def tree_order(keys: list[str], start_after: str | None) -> list[str]:
    """SeaweedFS: segments compared one by one; StartAfter skips its own subtree too."""

    def segments(key: str) -> list[str]:
        return key.split("/")

    return sorted(
        (
            k
            for k in keys
            if start_after is None
            or (segments(k) > segments(start_after) and not k.startswith(start_after + "/"))
        ),
        key=segments,
    )


Server = Callable[[list[str], str | None], list[str]]


def pages(
    server: Server, keys: list[str], prefix: str, start_after: str | None, size: int
) -> Iterator[list[tuple[str, int]]]:
    listed = [k for k in server(keys, start_after) if k.startswith(prefix)]
    for at in range(0, len(listed), size):
        yield [(k, 1) for k in listed[at : at + size]]


def list_range(
    server: Server,
    keys: list[str],
    key_range: KeyRange,
    page_size: int,
    ends: EmptyBeyond | None = None,
) -> list[str]:
    """What `tally_range` keeps of a server's listings for one range."""
    ends = ends or EmptyBeyond()
    if ends.covers(PREFIX, key_range):
        return []
    cut = RangeCut(PREFIX, key_range)
    kept: list[str] = []
    for page in pages(server, keys, PREFIX, cut.start_after, page_size):
        kept += [k for k, _ in cut.take(page)]
        if cut.done:
            break
    gap = cut.gap()
    if gap is not None:
        ends.note(PREFIX, gap)
    for prefix in cut.unshown():
        for page in pages(server, keys, prefix, None, page_size):
            kept += [k for k, _ in page]
    return kept


def split(bounds: list[str]) -> Iterator[KeyRange]:
    edges: list[str | None] = [None, *sorted(bounds), None]
    for after, upto in itertools.pairwise(edges):
        yield KeyRange(after, upto)


def keys_of(names: list[str]) -> list[str]:
    return [PREFIX + n + child for n in names for child in CHILDREN]


@pytest.mark.parametrize("server", [byte_order, tree_order], ids=["byte order", "tree order"])
@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_every_key_is_in_exactly_one_range_whatever_the_split(
    server: Server, page_size: int
) -> None:
    # `foo`, `image` and `a` have children but no key of their own, so that a cut can fall
    # between them and their children.
    without = {PREFIX + name for name in ("foo", "image", "a")}
    keys = [*(k for k in keys_of(NAMES) if k not in without), PREFIX, PREFIX + "/x", PREFIX + "//y"]
    extra = ["foo-1x", "foo!", "image-000005", "a-a", "f", "h", "image-0", "fo"]
    rng = random.Random(page_size)
    for _ in range(80):
        bounds = rng.sample([*NAMES, *extra], rng.randint(1, 8))
        listed: list[str] = []
        ends = EmptyBeyond()
        for key_range in split(bounds):
            listed += list_range(server, keys, key_range, page_size, ends)
        assert sorted(listed) == sorted(keys), bounds


@pytest.mark.parametrize("server", [byte_order, tree_order], ids=["byte order", "tree order"])
def test_a_range_keeps_exactly_the_keys_of_its_names(server: Server) -> None:
    keys = keys_of(NAMES)
    key_range = KeyRange("foo", "foo-2")
    kept = list_range(server, keys, key_range, 2)
    assert sorted(kept) == sorted(keys_of(["foo bar", "foo!x", "foo-2"]))


def test_children_of_a_name_before_the_bound_are_listed_apart_where_they_sort_after_it() -> None:
    keys = [PREFIX + k for k in ("foo", "foo-2", "foo-3", "foo/original")]
    cut = RangeCut(PREFIX, KeyRange(None, "foo-2"))
    assert cut.take([(k, 1) for k in byte_order(keys, None)]) == [
        (PREFIX + "foo", 1),
        (PREFIX + "foo-2", 1),
    ]
    assert cut.done
    assert cut.unshown() == [PREFIX + "foo/"]


def test_names_whose_children_were_shown_are_not_listed_again() -> None:
    keys = [PREFIX + k for k in ("foo", "foo/original", "foo-2", "foo-2!")]
    cut = RangeCut(PREFIX, KeyRange(None, "foo-2"))
    cut.take([(k, 1) for k in tree_order(keys, None)])
    assert cut.unshown() == [PREFIX + "foo-2/"]


def test_names_whose_children_the_listing_passed_are_not_listed_apart() -> None:
    keys = [PREFIX + k for k in ("foo-2", "foo-3")]
    cut = RangeCut(PREFIX, KeyRange("foo-1", "foo-2"))
    cut.take([(k, 1) for k in byte_order(keys, PREFIX + "foo-1")])
    assert cut.unshown() == []


def test_a_listing_that_ran_to_the_end_of_the_space_leaves_nothing_to_list() -> None:
    cut = RangeCut(PREFIX, KeyRange(None, "foo-2"))
    cut.take([(PREFIX + "foo", 1)])
    assert (cut.unshown(), cut.gap()) == ([], ("foo-2", None))


def test_straddling_names_are_the_bound_and_its_prefixes_before_low_characters() -> None:
    assert KeyRange(None, "image-000010").straddling_names() == ("image", "image-000010")
    assert KeyRange("image", "image-000010").straddling_names() == ("image-000010",)
    assert KeyRange(None, "a b-c").straddling_names() == ("a", "a b", "a b-c")
    assert KeyRange("x", None).straddling_names() == ()


def test_registry_slices_cut_each_space_at_names_and_leave_its_ends_open() -> None:
    rows = [(f"2/5/{n}", 5) for n in ("a", "b", "c", "d", "e")] + [("2/6/a", 6)]
    slices = list(registry_slices(rows, 2))
    assert [(s.space, s.key_range, list(s.assets)) for s in slices] == [
        (5, KeyRange(None, "b"), ["2/5/a", "2/5/b"]),
        (5, KeyRange("b", "d"), ["2/5/c", "2/5/d"]),
        (5, KeyRange("d", None), ["2/5/e"]),
        (6, KeyRange(None, None), ["2/6/a"]),
    ]


def test_the_asset_name_is_everything_after_customer_and_space() -> None:
    assert asset_name("2/5/foo bar") == "foo bar"


def test_ranges_between_a_range_and_the_name_it_was_cut_at_are_known_empty() -> None:
    ends = EmptyBeyond()
    ends.note("s/2/5/", ("a", "tiled"))
    assert ends.covers("s/2/5/", KeyRange("a", "b"))
    assert ends.covers("s/2/5/", KeyRange("b", "c"))
    assert not ends.covers("s/2/5/", KeyRange("b", "tiled"))
    assert not ends.covers("s/2/5/", KeyRange("0", "b"))
    ends.note("t/2/5/", ("a", "x-1"))
    assert ends.covers("t/2/5/", KeyRange("a", "w"))
    # in byte order, the keys `x/...` of a name `x` sort after `x-1`, where the cut was
    assert not ends.covers("t/2/5/", KeyRange("a", "x-0"))


def test_a_range_after_one_that_ran_to_the_end_of_its_space_is_known_empty() -> None:
    ends = EmptyBeyond()
    ends.note("storage/2/5/", ("foo", None))
    assert ends.covers("storage/2/5/", KeyRange("foo", "zzz"))
    assert ends.covers("storage/2/5/", KeyRange("goo", None))
    assert not ends.covers("storage/2/5/", KeyRange("fo", "zzz"))
    assert not ends.covers("thumbs/2/5/", KeyRange("foo", "zzz"))
    assert not ends.covers("storage/2/5/", KeyRange(None, "zzz"))
