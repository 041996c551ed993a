"""Memory benchmark: storage-calc on one customer with millions of registered assets.

    python -m benchmarks.memory --assets 2000000 [--objects 1000] [--seed 2] [--cache DIR]

Customer 1 has `--assets` assets registered in "Images", all in space 1, of which only those of
a dominant dataset of `--objects` objects have any on S3 (SeaweedFS). What a run holds in memory
then grows with the registry and the ImageStorage rows it writes, not with the listing. Both
the SeaweedFS data directory and the embedded PostgreSQL's, with the assets registered, are
kept in the cache, so that registering ten million assets happens once.

Times two runs of `storage-calc run`, each a process of its own: the first, which inserts every
ImageStorage row, and a rerun, which flags them in progress and rewrites them, as every night
after the first. Prints the wall time, the peak RSS (VmHWM read from /proc while the process
runs) and the durations the run logs itself, and checks the customer's figures after each.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.cache import DEFAULT_CACHE, seaweedfs_holding
from benchmarks.dataset import VERSION, Dataset, Layout, generate
from benchmarks.figures import check_figures, check_run, last_calculated
from benchmarks.process import Sample, progress, timed
from benchmarks.run import BUCKETS, aws_env, run_command
from storage_calc import db, embedded

CUSTOMER = 1  # where the dominant layout files every asset
MARKER = "registered.json"


@contextlib.contextmanager
def registered_database(
    directory: Path, assets: Iterator[str], platform_schema: str = "seed"
) -> Iterator[tuple[str, float]]:
    """The URL of an embedded PostgreSQL in `directory` with the platform's tables (in the
    layout `platform_schema`) and `assets` registered, and the seconds the registration took,
    for the duration of the block.

    A directory is used again only beside its marker, written once the registration committed;
    one without it is what an interrupted registration left, and is made again."""
    marker = directory / MARKER
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
    pgdata = directory / "pgdata"
    url = embedded.start(pgdata)
    try:
        if marker.exists():
            progress(f"reusing {directory}")
            yield url, float(json.loads(marker.read_text())["register_seconds"])
            return
        progress(f"registering the assets in {directory}")
        with db.connect(url) as conn:
            db.migrate(conn, platform_schema)
            # The README's operator step, as in benchmarks.run.
            conn.execute('ALTER TABLE "ImageStorage" SET (fillfactor = 50)')
            began = time.perf_counter()
            count = db.register_assets(conn, assets)
            # what autovacuum does after a bulk registration, before the first run
            conn.execute('VACUUM ANALYZE "Images"')
            seconds = time.perf_counter() - began
        written = directory / f"{MARKER}.new"
        written.write_text(json.dumps({"assets": count, "register_seconds": seconds}))
        written.rename(marker)
        yield url, seconds
    finally:
        embedded.stop(pgdata)


def all_assets(data: Dataset, count: int) -> Iterator[str]:
    """The dataset's assets, then as many more of the customer's space 1 as make `count`."""
    if count < len(data.assets):
        raise SystemExit(f"--assets must be at least the dataset's {len(data.assets)} assets")
    fillers = (f"{CUSTOMER}/1/registered-{n:09d}" for n in range(count - len(data.assets)))
    return itertools.chain(data.assets, fillers)


def logged_durations(stderr: str) -> dict[str, float]:
    """`duration_s` of the run's `customer_calculated` event for the customer and of its
    `run_finished` event, and the customer's `write_s`, from its JSON log lines."""
    durations = {}
    for line in stderr.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "run_finished" or (
                event.get("event") == "customer_calculated" and event.get("customer") == CUSTOMER
            ):
                durations[event["event"]] = float(event["duration_s"])
                if event.get("write_s") is not None:
                    durations["write"] = float(event["write_s"])
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=2_000_000)
    parser.add_argument("--objects", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    os.environ.update(aws_env())
    data = generate(args.objects, customers=1, seed=args.seed, layout=Layout.DOMINANT)
    truth = {CUSTOMER: [args.assets, *data.truth[CUSTOMER][1:]]}
    name = f"{args.assets}-{args.objects}-seed{args.seed}-v{VERSION}"

    with (
        seaweedfs_holding(
            args.cache, f"dominant-{args.objects}-1c-seed{args.seed}-v{VERSION}", [(BUCKETS, data)]
        ) as served,
        registered_database(
            args.cache / f"postgres-memory-{name}", all_assets(data, args.assets)
        ) as (database_url, register_seconds),
    ):
        with db.connect(database_url) as conn:
            # Every measurement starts from a registry without figures, whatever ran before.
            conn.execute('TRUNCATE "ImageStorage"')
            conn.execute('DELETE FROM "CustomerStorage" WHERE "Customer" = %s', (CUSTOMER,))
        env = {**os.environ, "AWS_ENDPOINT_URL_S3": served.url}
        env["STORAGE_CALC_DATABASE_URL"] = database_url
        runs = {}
        for label in ("first run, inserting every ImageStorage row", "rerun, flagging, rewriting"):
            progress(f"timing the {label.split(',')[0]}")
            runs[label] = checked_run(database_url, env, truth, data.outside)

    print(
        f'memory: customer {CUSTOMER} with {args.assets:,} assets registered in "Images" '
        f"(registered and vacuumed in {register_seconds:.0f} s), {data.objects:,} objects on "
        "SeaweedFS, all in space 1"
    )
    print(f"{'':<46} {'wall s':>8} {'run s':>8} {'customer s':>10} {'write s':>8} {'RSS MiB':>9}")
    for label, (sample, durations) in runs.items():
        run_s, customer_s, write_s = (
            durations.get(e, float("nan")) for e in ("run_finished", "customer_calculated", "write")
        )
        print(
            f"{label:<46} {sample.wall:8.2f} {run_s:8.2f} {customer_s:10.2f} {write_s:8.2f} "
            f"{sample.rss_mib:9.0f}"
        )
    print(
        "run s and customer s are the duration_s the run logs in run_finished and in the "
        "customer's customer_calculated: the customer's are reading its registry, flagging its "
        f"ImageStorage rows, listing its {data.objects:,} objects, staging and writing its "
        "figures; write s is its write transaction (write_s in customer_calculated)"
    )
    print(
        f"figures: equal to the ground truth after both runs, NumberOfStoredImages {args.assets:,}"
    )


def checked_run(
    database_url: str, env: dict[str, str], truth: dict[int, list[int]], outside: int
) -> tuple[Sample, dict[str, float]]:
    with db.connect(database_url) as conn:
        before = last_calculated(conn)
        sample = timed([[run_command(BUCKETS, None)]], env)
        mismatches = check_figures(conn, truth, before) + check_run(conn, outside)
    if mismatches:
        print(sample.stderr[-3000:], file=sys.stderr)
        raise SystemExit("figures differ from the ground truth:\n" + "\n".join(mismatches))
    return sample, logged_durations(sample.stderr)


if __name__ == "__main__":
    main()
