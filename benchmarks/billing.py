"""Figures over time at scale: a year of nightly runs stored, and `report billing` over a month.

    python -m benchmarks.billing [--customers 5000] [--spaces 20] [--nights 365] [--changing 5]

Starts an embedded PostgreSQL in a temporary directory, migrates it, and writes, as the job's
writes would have left them, a year of nightly commits of every customer (between 02:00 and
02:59, a customer at its own minute) and the steps of the spaces whose figures changed: every
space on the first night, then `--changing` percent of them each night, drawn afresh every
night. Every step carries billable figures too (the table's widest row, as a `--billable`
nightly run leaves it; `--platform-only` leaves them NULL). Prints the rows and the bytes of
each table with its indexes (pg_total_relation_size), then times `report billing` over the
last whole month of the history, for every customer (in the process, and as a `storage-calc`
process of its own) and for one customer per space, and checks its byte-hours against the same
sum computed in SQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage_calc import billing, billing_formats, db, embedded, reports
from storage_calc.tables import format_bytes

# The history ends here: its last whole month is November 2026.
LAST_NIGHT = datetime(2026, 11, 30, tzinfo=UTC)

GENERATE = """
INSERT INTO storage_calc.figure_spaces (customer, space)
SELECT c, s FROM generate_series(1, %(customers)s) c, generate_series(1, %(spaces)s) s
ORDER BY c, s;

INSERT INTO storage_calc.figure_commits (customer, committed_at, run_id)
SELECT c, %(first)s::timestamptz + d * interval '1 day' + interval '2 hours'
          + (c %% 60) * interval '1 minute' + (c %% 7) * interval '1 second',
       d + 1
FROM generate_series(0, %(nights)s - 1) d, generate_series(1, %(customers)s) c
ORDER BY d, c;

-- Night d's commit of customer c is the (d * customers + c)th: identities follow the ORDER BY.
INSERT INTO storage_calc.space_figures
SELECT s.id, k.committed_at, k.id, v.images, v.artefacts, v.artefacts / 50, NULL,
       CASE WHEN %(billable)s THEN v.artefacts + v.artefacts / 50 END,
       CASE WHEN %(billable)s
            THEN jsonb_build_object('STANDARD', v.artefacts + v.artefacts / 50) END,
       CASE WHEN %(billable)s THEN v.artefacts / 10 END,
       CASE WHEN %(billable)s THEN 0 END,
       CASE WHEN %(billable)s THEN v.artefacts + v.artefacts / 50 + v.artefacts / 10 END
FROM generate_series(0, %(nights)s - 1) d
JOIN storage_calc.figure_spaces s
  ON d = 0 OR (hashint8(s.id::bigint * 1000003 + d) %% 10000 + 10000) %% 10000 < %(changing)s * 100
JOIN storage_calc.figure_commits k ON k.id = d::bigint * %(customers)s + s.customer
CROSS JOIN LATERAL (
    SELECT 1000 + d * 3 + s.id %% 97 AS images,
           (s.id %% 1000 + 1)::bigint * 10000000 + d::bigint * 1000000 + s.id AS artefacts
) v
ORDER BY d, s.id;

VACUUM ANALYZE storage_calc.figure_spaces, storage_calc.figure_commits,
               storage_calc.space_figures;
"""

SIZES = """
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid),
       pg_relation_size(c.oid)
FROM pg_class c
WHERE c.relnamespace = 'storage_calc'::regnamespace
  AND c.relname IN ('figure_commits', 'figure_spaces', 'space_figures')
ORDER BY c.relname
"""

# The byte-hours of `stored` over a month, computed in SQL apart from storage_calc.billing: a
# step counts from its first whole hour until the next step's, clipped to the month.
CHECK = """
WITH steps AS (
    SELECT f.artefact_bytes + f.thumbnail_bytes + coalesce(f.adjunct_bytes, 0) AS stored,
           date_trunc('hour', f.valid_from + interval '1 hour' - interval '1 microsecond')
               AS begins,
           lead(date_trunc('hour', f.valid_from + interval '1 hour' - interval '1 microsecond'))
               OVER (PARTITION BY f.space_id ORDER BY f.valid_from) AS ends
    FROM storage_calc.space_figures f
)
SELECT sum(stored * extract(epoch FROM least(coalesce(ends, %(end)s), %(end)s)
                                       - greatest(begins, %(start)s))::bigint / 3600)
FROM steps
WHERE begins < %(end)s AND coalesce(ends, %(end)s) > %(start)s
  AND least(coalesce(ends, %(end)s), %(end)s) > greatest(begins, %(start)s)
"""


def generate(
    conn: db.Connection,
    customers: int,
    spaces: int,
    nights: int,
    changing: float,
    billable: bool = True,
) -> float:
    first = LAST_NIGHT - timedelta(days=nights - 1)
    began = time.perf_counter()
    params = {"customers": customers, "spaces": spaces, "nights": nights, "changing": changing,
              "first": first, "billable": billable}  # fmt: skip
    for statement in GENERATE.split(";\n\n"):
        conn.execute(statement, params if "%(" in statement else None)
    return time.perf_counter() - began


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process of this machine (the embedded server's backend)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(repeat: int, operation: object, backend: int) -> tuple[list[float], list[float]]:
    """Wall times of `operation`, and the CPU times of this process and of the database
    backend together: on a machine shared with other work the wall time grows with the load,
    the CPU time much less."""
    walls, cpus = [], []
    for _ in range(repeat):
        began, cpu = time.perf_counter(), time.process_time() + cpu_seconds(backend)
        operation()  # type: ignore[operator]
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() + cpu_seconds(backend) - cpu)
    return walls, cpus


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--spaces", type=int, default=20)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--changing", type=float, default=5.0, help="percent of spaces a night")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--platform-only",
        action="store_true",
        help="steps without billable figures, as runs without --billable leave them",
    )
    args = parser.parse_args()
    month = billing.month_period(f"{LAST_NIGHT:%Y-%m}")
    with tempfile.TemporaryDirectory(prefix="storage-calc-billing-bench-") as tmp:
        url = embedded.start(Path(tmp) / "pg")
        try:
            with db.connect(url) as conn:
                db.migrate(conn)
                took = generate(
                    conn, args.customers, args.spaces, args.nights, args.changing,
                    billable=not args.platform_only,
                )  # fmt: skip
                backend = db.backend_pid(conn)
                print(
                    f"history: {args.customers:,} customers x {args.spaces} spaces, "
                    f"{args.nights} nights, {args.changing:g}% of spaces changing a night, "
                    f"{'platform figures only' if args.platform_only else 'billable figures too'} "
                    f"(generated in {took:.1f} s)"
                )
                total = 0
                for name, rows, size, heap in conn.execute(SIZES):
                    total += size
                    print(
                        f"  {name:<15} {rows:>11,} rows  {format_bytes(size):>10} "
                        f"({format_bytes(heap)} table, {format_bytes(size - heap)} indexes)"
                    )
                print(f"  {'total':<15} {'':>16}  {format_bytes(total):>10} ({total:,} bytes)")
                for classes, render in ((False, billing_formats.table),
                                        (True, billing_formats.csv_text)):  # fmt: skip
                    report_all = lambda render=render, classes=classes: render(  # noqa: E731
                        billing_formats.report_of(
                            month, month.end, False,
                            reports.billing_usage(conn, month, None, classes)[1], None,
                        )
                    )  # fmt: skip
                    times, cpus = timed(args.repeat, report_all, backend)
                    print(
                        f"report billing --month {month.start:%Y-%m}"
                        f"{' --csv (by storage class)' if classes else ' (a table)'}, every "
                        f"customer, in the process: median {statistics.median(times):.2f} s, "
                        f"best {min(times):.2f} s; CPU median {statistics.median(cpus):.2f} s "
                        f"({args.repeat} runs, {load()})"
                    )
                _, usages = reports.billing_usage(conn, month, None)
                one, _ = timed(args.repeat, lambda: reports.billing_usage(conn, month, 1), backend)
                print(
                    f"report billing --month {month.start:%Y-%m} --customer 1: median "
                    f"{statistics.median(one) * 1000:.1f} ms"
                )
                expected = conn.execute(CHECK, {"start": month.start, "end": month.end})
                (want,) = expected.fetchone()  # type: ignore[misc]
                got = sum(u.byte_hours.get("stored", 0) for u in usages)
                if got != want:
                    raise SystemExit(f"stored byte-hours {got:,} != {want:,} summed in SQL")
                print(f"byte-hours: equal to the sum computed in SQL ({got:,} stored byte-hours)")
            env = {**os.environ, "STORAGE_CALC_DATABASE_URL": url}
            command = [sys.executable, "-m", "storage_calc", "report", "billing", "--month",
                       f"{month.start:%Y-%m}", "--csv"]  # fmt: skip
            process_times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                result = subprocess.run(command, env=env, capture_output=True, text=True)
                process_times.append(time.perf_counter() - began)
                if result.returncode != 0:
                    raise SystemExit(result.stderr)
            lines = result.stdout.count("\n")
            print(
                f"storage-calc report billing --month {month.start:%Y-%m} --csv, a process: "
                f"median {statistics.median(process_times):.2f} s ({lines - 1:,} lines)"
            )
        finally:
            embedded.stop(Path(tmp) / "pg")


if __name__ == "__main__":
    main()
