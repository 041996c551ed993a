"""Property tests: in each layout of the platform's tables met in the field, random
registries and objects, random scopes and random listing failures.

After every run the invariants of CONTRACT §3.2 hold, and once a run over everything succeeds
the figures equal a naive reference model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.model import AssetKey, Layout, Scope
from storage_calc.sources.listing import S3Client, list_pages
from tests.conftest import LAYOUT_DDL, STORAGE, THUMBS, error_response

Conn = psycopg.Connection[Any]

asset_ids = st.builds(
    lambda c, s, a: f"{c}/{s}/{a}",
    st.integers(1, 3), st.integers(1, 2), st.sampled_from(["a", "a-2", "ab", "a b", "b"]),
)  # fmt: skip
objects = st.lists(
    st.tuples(
        st.sampled_from([STORAGE, THUMBS]),
        asset_ids,
        st.sampled_from(["", "/original", "/open/100.jpg", "/x/y"]),
        st.integers(0, 996),
    ),
    max_size=25,
)
scopes = st.one_of(
    st.just(Scope()),
    st.builds(Scope, customer=st.integers(1, 3)),
    st.builds(lambda c, s: Scope(customer=c, space=s), st.integers(1, 3), st.integers(1, 2)),
    asset_ids.map(lambda i: Scope(asset=AssetKey(*map(int, i.split("/")[:2]), i.split("/")[2]))),
)
steps = st.lists(st.tuples(scopes, st.sets(st.integers(1, 3))), min_size=1, max_size=4)


@pytest.fixture
def conn(layout_url: str) -> Iterator[Conn]:
    with psycopg.connect(layout_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def layout(conn: Conn) -> Layout:
    return db.detect_layout(conn)


def check_invariants(conn: Conn, layout: Layout) -> None:
    """Each space row holds the sums of its assets, the customer-level row (at "Space" 0 or
    NULL, as the layout has it) the sums of its spaces, and no flag is left set."""
    spaces = conn.execute(
        'SELECT c."Customer", c."Space", c."NumberOfStoredImages", c."TotalSizeOfStoredImages",'
        ' c."TotalSizeOfThumbnails", count(i."Id"), coalesce(sum(i."Size"), 0),'
        ' coalesce(sum(i."ThumbnailSize"), 0)'
        ' FROM "CustomerStorage" c LEFT JOIN "ImageStorage" i'
        ' ON i."Customer" = c."Customer" AND i."Space" = c."Space"'
        ' WHERE c."Space" IS DISTINCT FROM %s GROUP BY 1, 2, 3, 4, 5',
        (layout.customer_space,),
    ).fetchall()
    for row in spaces:
        assert row[2:5] == row[5:8], row
    rows = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails" FROM "CustomerStorage"'
    ).fetchall()
    for customer in {r[0] for r in rows}:
        own = [r for r in rows if r[0] == customer]
        (total,) = [r[2:] for r in own if r[1] == layout.customer_space]
        spaces_of = [r for r in own if r[1] != layout.customer_space]
        assert total == tuple(sum(r[i] for r in spaces_of) for i in (2, 3, 4)), customer
    in_progress = conn.execute('SELECT count(*) FROM "ImageStorage" WHERE "CheckingInProgress"')
    assert in_progress.fetchone() == (0,)


def reference(
    registered: set[str], listed: dict[tuple[str, str], int]
) -> dict[str, tuple[int, int]]:
    def owned(asset: str, bucket: str) -> int:
        return sum(
            size for (b, key), size in listed.items()
            if b == bucket and (key == asset or key.startswith(asset + "/"))
        )  # fmt: skip

    return {a: (owned(a, STORAGE), owned(a, THUMBS)) for a in registered}


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(registered=st.sets(asset_ids, max_size=8), listed=objects, runs=steps)
@pytest.mark.parametrize("layout_url", LAYOUT_DDL, indirect=True)
def test_invariants_hold_after_any_runs_and_failures(
    registered: set[str], listed: list[tuple[str, str, str, int]],
    runs: list[tuple[Scope, set[int]]], s3: S3Client, layout_url: str, conn: Conn,
    layout: Layout,
) -> None:  # fmt: skip
    settings = Settings(database_url=layout_url, workers=4)
    # CASCADE: "Adjuncts", where the layout has it, refers to "Images".
    conn.execute('TRUNCATE "Images", "ImageStorage", "CustomerStorage" CASCADE')
    for bucket in (STORAGE, THUMBS):
        for page in list_pages(s3, bucket, ""):
            for key, _ in page.objects:
                s3.delete_object(Bucket=bucket, Key=key)
    db.register_assets(conn, registered)
    stored = {(bucket, asset + rest): size for bucket, asset, rest, size in listed}
    for (bucket, key), size in stored.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)

    failing: set[int] = set()
    hook = failing_customers(failing)
    s3.meta.events.register("before-send.s3.ListObjectsV2", hook)
    try:
        for scope, failures in runs:
            failing.clear()
            failing.update(failures)
            calculator.run(settings, s3, scope)
            check_invariants(conn, layout)
        failing.clear()
        report = calculator.run(settings, s3)
    finally:
        s3.meta.events.unregister("before-send.s3.ListObjectsV2", hook)
    assert report.outcome == "done"
    check_invariants(conn, layout)
    rows = conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"')
    assert {r[0]: (r[1], r[2]) for r in rows} == reference(registered, stored)


def failing_customers(failing: set[int]) -> Callable[..., Any]:
    def answer(request: Any, **_: Any) -> Any:
        if any(f"prefix={c}%2F" in request.url for c in failing):
            return error_response(403, "AccessDenied")
        return None

    return answer
