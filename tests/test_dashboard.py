"""The Grafana dashboard and docs/views.md against a real migrated database: every query of the
dashboard runs, and every documented column exists, so neither can silently break."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage_calc import calculator, db
from storage_calc.billable import BillableTally
from storage_calc.config import Settings
from storage_calc.model import Spaces
from storage_calc.sources.listing import S3Client
from storage_calc.sources.versions import billable_of
from tests.conftest import STORAGE, THUMBS

ROOT = Path(__file__).parent.parent
DASHBOARD = json.loads((ROOT / "deploy/grafana/storage-calc.json").read_text())
PANELS = DASHBOARD["panels"]
DOCUMENTED_TYPES = {
    "timestamptz": "timestamp with time zone",
    "text[]": "ARRAY",
    "integer[]": "ARRAY",
}


def grafana_macros(sql: str) -> str:
    """The query as Grafana's PostgreSQL data source sends it, for the last 30 days."""
    expanded = re.sub(
        r"\$__timeFilter\(([^()]*(?:\([^()]*\))?[^()]*)\)",
        r"\1 BETWEEN now() - interval '30 days' AND now() + interval '1 day'",
        sql,
    )
    assert "$" not in expanded, f"a Grafana macro the test does not expand: {expanded}"
    return expanded


@pytest.fixture
def history(
    register: Callable[..., None],
    put: Callable[..., None],
    settings: Settings,
    s3: S3Client,
    conn: Any,
) -> None:
    """Two real runs: the second finds a change and an orphan; customer 3 is at its quota;
    customer 2's billable bytes are listed and written."""
    conn.execute(
        "INSERT INTO \"StoragePolicies\" VALUES ('small', 10, 300);"
        ' INSERT INTO "CustomerStorage" ("Customer", "Space", "StoragePolicy",'
        ' "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails")'
        " VALUES (3, 0, 'small', 0, 0, 0)"
    )
    register("2/5/a", "2/6/b", "3/1/c")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 200, "3/1/c": 300})
    put(THUMBS, {"2/5/a/open/100.jpg": 5})
    calculator.run(settings, s3)
    put(STORAGE, {"2/5/a": 150, "2/5/gone": 9})
    calculator.run(settings, s3)
    tally = BillableTally()
    billable_of(s3, settings.locations, "2/", tally)
    db.write_billable(conn, 2, Spaces(), tally.rows(), db.server_now(conn))
    # The figures over time two days back, so that whole hours of them count in this month.
    conn.execute(
        "UPDATE storage_calc.figure_commits SET committed_at = committed_at - interval '2 days';"
        " UPDATE storage_calc.space_figures SET valid_from = valid_from - interval '2 days'"
    )


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_every_dashboard_query_runs_on_a_migrated_database(
    history: None, conn: Any, panel: dict[str, Any]
) -> None:
    for target in panel["targets"]:
        cursor = conn.execute(grafana_macros(target["rawSql"]))
        rows = cursor.fetchall()
        columns = [c.name for c in cursor.description]
        if target["format"] == "time_series":
            assert columns[0] == "time" and rows, "a time series needs a time column and data"
        else:
            assert rows, f"{panel['title']} shows nothing after two runs"


def test_the_dashboard_panels_read_the_provisioned_data_source() -> None:
    [source] = yaml.safe_load((ROOT / "deploy/grafana/datasource.yaml").read_text())["datasources"]
    uids = {t["datasource"]["uid"] for p in PANELS for t in p["targets"]}
    uids |= {p["datasource"]["uid"] for p in PANELS}
    assert uids == {source["uid"]}
    assert {p["datasource"]["type"] for p in PANELS} == {source["type"]}


def test_the_dashboard_panels_do_not_overlap() -> None:
    cells = [
        (x, y)
        for p in PANELS
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert max(x for x, _ in cells) < 24


def documented_columns() -> dict[str, list[tuple[str, str]]]:
    """docs/views.md: relation -> [(column, type)] in the order written."""
    documented: dict[str, list[tuple[str, str]]] = {}
    relation = None
    for line in (ROOT / "docs/views.md").read_text().splitlines():
        if line.startswith("### storage_calc."):
            relation = line.removeprefix("### storage_calc.")
            documented[relation] = []
        elif relation and line.startswith("| ") and not line.startswith(("| column", "| ---")):
            name, kind = (cell.strip() for cell in line.strip("|").split("|")[:2])
            documented[relation].append((name, DOCUMENTED_TYPES.get(kind, kind)))
    return documented


def test_docs_describe_every_column_of_every_table_and_view(conn: Any) -> None:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'storage_calc' ORDER BY table_name, ordinal_position"
    ).fetchall()
    actual: dict[str, list[tuple[str, str]]] = {}
    for relation, column, kind in rows:
        actual.setdefault(relation, []).append((column, kind))
    assert documented_columns() == actual
