from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage_calc.model import LocationKind, SpaceOrphans
from storage_calc.rollup import ORPHAN_ASSETS_COUNTED, Tally

ART = LocationKind.ARTEFACT
THUMB = LocationKind.THUMBNAIL


def test_artefacts_and_thumbnails_are_summed_apart() -> None:
    tally = Tally({"2/5/foo": 5})
    tally.add(ART, "s", "", [("2/5/foo", 100), ("2/5/foo/original", 20)])
    tally.add(THUMB, "t", "", [("2/5/foo/open/100.jpg", 3)])
    assert list(tally.asset_rows()) == [("2/5/foo", 5, 120, 3, 0)]


def test_a_registered_asset_without_objects_has_zero_figures() -> None:
    tally = Tally({"2/5/empty": 5})
    assert list(tally.asset_rows()) == [("2/5/empty", 5, 0, 0, 0)]


def test_orphans_are_summarised_per_space_and_never_totalled() -> None:
    tally = Tally({"2/5/foo": 5})
    tally.add(ART, "s", "", [("2/5/gone", 7), ("2/5/gone/original", 8), ("2/6/other", 1)])
    assert list(tally.asset_rows()) == [("2/5/foo", 5, 0, 0, 0)]
    assert tally.space_orphans() == (
        SpaceOrphans(
            customer=2, space=5, objects=2, bytes=15, assets=1, examples=("s3://s/2/5/gone",)
        ),
        SpaceOrphans(
            customer=2, space=6, objects=1, bytes=1, assets=1, examples=("s3://s/2/6/other",)
        ),
    )


def test_unattributed_keys_are_counted() -> None:
    tally = Tally({})
    tally.add(ART, "s", "", [("2/pdf/report.pdf", 10), ("2/5/x", 1)])
    assert (tally.unattributed_objects, tally.unattributed_bytes) == (1, 10)
    assert (tally.objects, tally.bytes) == (2, 11)


def test_the_location_prefix_is_cut_before_attribution() -> None:
    tally = Tally({"2/5/foo": 5})
    tally.add(ART, "shared", "dlcs/", [("dlcs/2/5/foo", 4)])
    assert list(tally.asset_rows()) == [("2/5/foo", 5, 4, 0, 0)]


def test_sizes_beyond_32_bits_stay_exact() -> None:
    tally = Tally({"2/5/big": 5})
    tally.add(ART, "s", "", [("2/5/big", 6 * 2**30), ("2/5/big/original", 2**40 + 1)])
    assert list(tally.asset_rows()) == [("2/5/big", 5, 6 * 2**30 + 2**40 + 1, 0, 0)]


objects = st.lists(
    st.tuples(
        st.sampled_from(["2/5/a", "2/5/a/x", "2/5/b", "2/6/c/y", "2/5/z", "2/x/q", "3"]),
        st.integers(0, 2**40),
    ),
    max_size=30,
)


@given(objects, st.integers(0, 30), st.randoms())
def test_splitting_and_shuffling_the_listing_gives_the_same_tally(
    listed: list[tuple[str, int]], cut: int, rnd: object
) -> None:
    registry = {"2/5/a": 5, "2/5/b": 5, "2/6/c": 6}
    whole = Tally(registry)
    whole.add(ART, "s", "", listed)
    shuffled = list(listed)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = Tally(registry), Tally(registry)
    first.add(ART, "s", "", shuffled[:cut])
    second.add(ART, "s", "", shuffled[cut:])
    first.merge(second)
    assert list(first.asset_rows()) == list(whole.asset_rows())
    assert first.space_orphans() == whole.space_orphans()
    assert (first.objects, first.bytes, first.unattributed_bytes) == (
        whole.objects,
        whole.bytes,
        whole.unattributed_bytes,
    )


def test_distinct_orphan_assets_are_counted_up_to_a_cap() -> None:
    over = ORPHAN_ASSETS_COUNTED + 10
    tally = Tally({})
    tally.add(ART, "s", "", [(f"2/5/gone-{n}", 1) for n in range(over)])
    (orphans,) = tally.space_orphans()
    assert (orphans.objects, orphans.bytes, orphans.assets) == (over, over, ORPHAN_ASSETS_COUNTED)


def test_space_zero_keys_belong_to_stub_assets_where_the_layout_has_a_stub_space() -> None:
    tally = Tally({"2/0/stub": 0}, stub_space=True)
    tally.add(LocationKind.ARTEFACT, "s", "", [("2/0/stub/original", 7), ("2/0/gone", 1)])
    assert list(tally.asset_rows()) == [("2/0/stub", 0, 7, 0, 0)]
    assert [(o.space, o.objects) for o in tally.space_orphans()] == [(0, 1)]


def test_space_zero_keys_are_unattributed_where_space_zero_is_the_customer_row() -> None:
    tally = Tally({})
    tally.add(LocationKind.ARTEFACT, "s", "", [("2/0/stub/original", 7)])
    assert (tally.unattributed_objects, tally.space_orphans()) == (1, ())


def test_adjunct_keys_count_apart_from_artefacts_where_the_layout_tracks_them() -> None:
    tally = Tally({"2/5/foo": 5}, split_adjuncts=True)
    tally.add(LocationKind.ARTEFACT, "s", "", [("2/5/foo", 10), ("2/5/foo/adjuncts/a.xml", 3)])
    tally.add(LocationKind.THUMBNAIL, "t", "", [("2/5/foo/adjuncts/x.jpg", 2)])
    assert list(tally.asset_rows()) == [("2/5/foo", 5, 10, 2, 3)]


def test_adjunct_keys_are_artefacts_where_the_layout_has_no_adjunct_column() -> None:
    tally = Tally({"2/5/foo": 5})
    tally.add(LocationKind.ARTEFACT, "s", "", [("2/5/foo", 10), ("2/5/foo/adjuncts/a.xml", 3)])
    assert list(tally.asset_rows()) == [("2/5/foo", 5, 13, 0, 0)]
