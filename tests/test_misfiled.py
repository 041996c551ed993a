"""A registered asset whose Id names another customer or space than its own "Customer" and
"Space" columns (`22/1/x` filed under space 2, `23/1/y` filed under customer 22) is misfiled:
it counts in no figure, whatever the scope of the run, and every run reports it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import Result
from structlog.testing import capture_logs

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import Misfiled, Scope
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE

Conn = psycopg.Connection[Any]
Invoke = Callable[..., Result]


@pytest.fixture
def misfiled(register: Callable[..., None], put: Callable[..., None], conn: Conn) -> None:
    """Customer 22: y in space 2, x filed under space 2 though its Id says space 1, and z of
    customer 23 filed under customer 22."""
    register("22/2/y", "22/1/x", "23/1/z")
    conn.execute('UPDATE "Images" SET "Space" = 2 WHERE "Id" = \'22/1/x\'')
    conn.execute('UPDATE "Images" SET "Customer" = 22 WHERE "Id" = \'23/1/z\'')
    put(STORAGE, {"22/2/y": 20, "22/1/x": 10, "22/1/x/original": 5, "23/1/z": 7})


def run(settings: Settings, s3: S3Client, **kwargs: Any) -> Any:
    return calculator.run(settings, s3, **kwargs)


def rows(conn: Conn) -> dict[tuple[int, int], tuple[int, int]]:
    found = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages"'
        ' FROM "CustomerStorage"'
    )
    return {(c, s): (n, size) for c, s, n, size in found}


def test_a_misfiled_asset_counts_in_no_figure(
    misfiled: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3)
    assert rows(conn) == {(22, 0): (1, 20), (22, 2): (1, 20)}
    assert conn.execute('SELECT "Id" FROM "ImageStorage"').fetchall() == [("22/2/y",)]


def test_a_misfiled_assets_objects_are_orphans_where_their_keys_are(
    misfiled: None, settings: Settings, s3: S3Client
) -> None:
    report = run(settings, s3)
    orphans = {(o.customer, o.space): (o.objects, o.bytes) for c in report.customers
               for o in c.orphans}  # fmt: skip
    assert orphans == {(22, 1): (2, 15), (23, 1): (1, 7)}


@pytest.mark.parametrize(
    "scope", [Scope(customer=22), Scope(customer=22, space=2)], ids=["customer", "space"]
)
def test_every_scope_reports_the_misfiled_rows_it_covers(
    misfiled: None, settings: Settings, s3: S3Client, scope: Scope
) -> None:
    with capture_logs() as logs:
        report = run(settings, s3, scope=scope)
    (result,) = report.customers
    expected = (
        Misfiled(2, ("22/1/x", "23/1/z")) if scope.space is None else Misfiled(1, ("22/1/x",))
    )
    assert result.misfiled == expected
    warning = next(e for e in logs if e["event"] == "misfiled_assets")
    assert (warning["customer"], warning["count"], warning["examples"]) == (
        22, expected.count, list(expected.examples),
    )  # fmt: skip


def test_a_space_run_gives_the_same_figures_as_a_customer_run(
    misfiled: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    run(settings, s3, scope=Scope(customer=22))
    whole = rows(conn)
    for space in (1, 2):
        run(settings, s3, scope=Scope(customer=22, space=space))
    assert rows(conn) == whole


def test_a_figure_written_for_a_misfiled_asset_is_removed(
    misfiled: None, settings: Settings, s3: S3Client, conn: Conn
) -> None:
    conn.execute(
        'INSERT INTO "ImageStorage" ("Id", "Customer", "Space", "ThumbnailSize", "Size",'
        ' "LastChecked", "CheckingInProgress") VALUES (\'22/1/x\', 22, 2, 0, 15, now(), false)'
    )
    run(settings, s3)
    assert rows(conn)[(22, 2)] == (1, 20)


def test_the_history_and_reports_show_the_misfiled_rows(
    misfiled: None, invoke: Invoke, conn: Conn
) -> None:
    invoke("run")
    assert conn.execute(
        "SELECT customer, misfiled, misfiled_examples FROM storage_calc.customer_runs"
        " WHERE misfiled > 0"
    ).fetchall() == [(22, 2, ["22/1/x", "23/1/z"])]
    (latest,) = json.loads(invoke("runs", "--json").stdout)
    assert latest["misfiled"] == 2
    (reported,) = json.loads(invoke("report", "misfiled", "--json").stdout)
    assert (reported["customer"], reported["misfiled"], reported["examples"]) == (
        22, 2, ["22/1/x", "23/1/z"],
    )  # fmt: skip
    table = invoke("report", "misfiled").stdout.splitlines()
    assert table[1].split()[:4] == ["22", "2", "22/1/x", "23/1/z"]


def test_no_misfiled_rows_says_so(
    register: Callable[..., None], put: Callable[..., None], invoke: Invoke
) -> None:
    register("2/5/a")
    put(STORAGE, {"2/5/a": 1})
    invoke("run")
    assert invoke("report", "misfiled").stdout == "no misfiled assets found\n"
