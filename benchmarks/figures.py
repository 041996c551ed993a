"""The customer rows and the run record a run wrote, checked against a dataset's ground truth."""

from __future__ import annotations

from datetime import datetime

from storage_calc import db

# The benchmarks' databases are migrated in the seed layout, whose customer-level row is space 0.
CUSTOMER_ROWS = (
    'SELECT "Customer", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
    ' "TotalSizeOfThumbnails", "LastCalculated" FROM "CustomerStorage"'
    ' WHERE "Space" = 0 AND "Customer" = ANY(%s)'
)


def last_calculated(conn: db.Connection) -> datetime | None:
    """The latest `LastCalculated` of any row: a run after this moment writes later ones."""
    row = conn.execute('SELECT max("LastCalculated") FROM "CustomerStorage"').fetchone()
    return row[0] if row else None


def check_figures(
    conn: db.Connection, truth: dict[int, list[int]], after: datetime | None
) -> list[str]:
    """What differs between the customer rows and `truth` (customer -> [assets, artefact
    bytes, thumbnail bytes]), and every row not written since `after`, so that a check after
    each run is a check of that run and not of an earlier one."""
    rows = conn.execute(CUSTOMER_ROWS, (list(truth),)).fetchall()
    found = {c: [n, s, t] for c, n, s, t, _ in rows}
    stale = sorted(c for c, *_, calculated in rows if after is not None and calculated <= after)
    return [
        f"customer {c}: expected {expected}, found {found.get(c)}"
        for c, expected in sorted(truth.items())
        if found.get(c) != expected
    ] + [f"customer {c}: its row was not written by the run" for c in stale]


LATEST_RUN = (
    "SELECT id, outcome, unattributed, uncounted, error FROM storage_calc.runs"
    " ORDER BY id DESC LIMIT 1"
)


def check_run(conn: db.Connection, outside: int) -> list[str]:
    """What is wrong with the record of the latest run: an outcome other than `done`, a prefix
    it could not count, or unattributed keys other than the dataset's `outside` objects."""
    row = conn.execute(LATEST_RUN).fetchone()
    if row is None:
        return ["no run was recorded"]
    run_id, outcome, unattributed, uncounted, error = row
    problems = []
    if outcome != "done":
        problems.append(f"run {run_id}: outcome {outcome}: {error}")
    if uncounted:
        problems.append(f"run {run_id}: prefixes not counted: {', '.join(uncounted)}")
    if unattributed != outside:
        problems.append(f"run {run_id}: {unattributed} unattributed keys, expected {outside}")
    return problems
