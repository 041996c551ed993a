"""Inventory benchmark: storage-calc reading S3 Inventory reports beside DuckDB's floor.

    python -m benchmarks.inventory [--objects 70000000] [--assets 10000000]
        [--format parquet|csv|both] [--seed 2] [--workers N] [--cache DIR]

A generated inventory of a storage bucket and a thumbnails bucket in the platform's layout
(`benchmarks/inventory_data.py`), in Parquet and in CSV gzip, is served by SeaweedFS from the
cache, and its registry, spread over customers of which customer 1 holds most, by an embedded
PostgreSQL kept in the cache too. Every run writes a fresh report folder (`manifest.json`,
`manifest.checksum`) dated now for each configuration, pointing at the cached data files.

For each format, in one run:

- the floor: DuckDB alone downloads the report's data files to a local directory (timed apart),
  scans them (count and sum of sizes), then derives each key's owner, sums the sizes per asset
  and per kind (artefact, thumbnail, adjunct under `{id}/adjuncts/`) and joins the registered
  ids; its per-customer totals are checked against the ground truth;
- ours: `storage-calc run --source inventory` on the two configurations, as a process of its
  own, with the wall time, the peak RSS and the attribution and write times it logs
  (`inventory_attributed`, `customer_calculated`, `run_finished`); its customer rows are then
  checked against the ground truth. `"ImageStorage"` and `"CustomerStorage"` are emptied before
  each run, so that each format's run is a first run, inserting every row.

Targets, on Parquet: attribution at no less than half the floor's rate, the whole run within
240 s, peak RSS under 1 GiB. CSV figures are shown beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import boto3
import duckdb
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from benchmarks.cache import DEFAULT_CACHE, Buckets, seaweedfs_loaded
from benchmarks.inventory_data import (
    FORMATS,
    INVENTORY,
    STORAGE,
    THUMBS,
    Inventory,
    Report,
    cached_inventory,
    data_key,
    destination,
    registered_ids,
    report,
)
from benchmarks.memory import registered_database
from benchmarks.process import Sample, progress, timed
from benchmarks.run import aws_env, run_command
from storage_calc import db

BUCKETS = Buckets(STORAGE, THUMBS)
TARGET_RATIO = 0.5
TARGET_RUN_S = 240.0
TARGET_RSS_MIB = 1024.0
# A single PUT each, so that every data file's ETag is the MD5 its manifest names.
SINGLE_PUT = 5 * 1024**3


@dataclass
class Floor:
    download_s: float
    scan_s: float
    attribute_s: float
    attribute_cpu_s: float
    registry_s: float
    mismatches: list[str]


@dataclass
class Ours:
    sample: Sample
    cpu_s: float
    attributed_objects: int | None = None
    attribute_s: float | None = None
    run_s: float | None = None
    write_s: float | None = None
    mismatches: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.sample.returncode != 0


def upload(endpoint: str, inventory: Inventory) -> float:
    """Creates the buckets, puts every data file where AWS would, and lists them back."""
    client = s3_client(endpoint)
    began = time.perf_counter()
    for bucket in (INVENTORY, STORAGE, THUMBS):
        client.create_bucket(Bucket=bucket)
    transfer = TransferConfig(multipart_threshold=SINGLE_PUT)

    def put(index: int) -> None:
        data_file = inventory.files[index]
        key = data_key(data_file.bucket, data_file.format, data_file.name)
        client.upload_file(str(inventory.path(data_file)), INVENTORY, key, Config=transfer)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, range(len(inventory.files))))
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=INVENTORY):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    expected = {data_key(f.bucket, f.format, f.name): f.size for f in inventory.files}
    if found != expected:
        raise SystemExit(f"SeaweedFS lists {len(found)} data files, {len(expected)} were put")
    return time.perf_counter() - began


def s3_client(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=16))


def put_reports(client: object, inventory: Inventory, now: datetime) -> dict[str, list[Report]]:
    """A report dated `now` for each format and bucket: manifest.json before its checksum."""
    reports: dict[str, list[Report]] = {fmt: [] for fmt in FORMATS}
    for fmt in FORMATS:
        for bucket in (STORAGE, THUMBS):
            made, objects = report(inventory, bucket, fmt, now)
            for key, body in objects.items():
                client.put_object(Bucket=INVENTORY, Key=key, Body=body)  # type: ignore[attr-defined]
            reports[fmt].append(made)
    return reports


def source(fmt: str, paths: list[Path], decoded: bool = True) -> str:
    """A DuckDB relation of (key, size) over `paths`, keys decoded as AWS encodes them in CSV
    (`quote_plus`: `+` is a space, `%2B` a plus)."""
    files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    if fmt == "parquet":
        return f"(SELECT key, size FROM read_parquet({files}))"
    columns = (
        "{'bucket': 'VARCHAR', 'key': 'VARCHAR', 'size': 'BIGINT', "
        "'last_modified_date': 'VARCHAR', 'storage_class': 'VARCHAR'}"
    )
    key = "url_decode(replace(key, '+', ' '))" if decoded else "key"
    return (
        f"(SELECT {key} AS key, size FROM read_csv({files}, header = false, quote = '\"', "
        f"delim = ',', compression = 'gzip', columns = {columns}))"
    )


# The owner of a key: `{customer}/{space}/{asset}` where customer and space are canonical
# decimals; the join with the registry drops what no registered asset owns.
OWNER = r"regexp_extract(key, '^((?:0|[1-9][0-9]{0,9})/(?:0|[1-9][0-9]{0,9})/[^/]+)', 1)"

ATTRIBUTE = """
CREATE OR REPLACE TABLE per_asset AS
WITH objects AS (
    SELECT key, size, false AS thumb FROM {storage}
    UNION ALL
    SELECT key, size, true AS thumb FROM {thumbs}
), owned AS (
    SELECT {owner} AS owner, key, size, thumb FROM objects
), summed AS (
    SELECT owner,
           sum(size) FILTER (WHERE NOT thumb AND NOT starts_with(key, owner || '/adjuncts/'))
               AS artefact,
           sum(size) FILTER (WHERE thumb) AS thumbnail,
           sum(size) FILTER (WHERE NOT thumb AND starts_with(key, owner || '/adjuncts/'))
               AS adjunct
    FROM owned WHERE owner <> '' GROUP BY owner
)
SELECT r.id, coalesce(s.artefact, 0) AS artefact, coalesce(s.thumbnail, 0) AS thumbnail,
       coalesce(s.adjunct, 0) AS adjunct
FROM registered r LEFT JOIN summed s ON s.owner = r.id
"""

PER_CUSTOMER = """
SELECT CAST(split_part(id, '/', 1) AS BIGINT), count(*), sum(artefact), sum(thumbnail),
       sum(adjunct)
FROM per_asset GROUP BY 1
"""


def measure_floor(
    client: object, inventory: Inventory, reports: list[Report], fmt: str, tmp: Path
) -> Floor:
    """DuckDB alone on the data files of `reports`, downloaded to `tmp` first."""
    progress(f"floor ({fmt}): downloading the data files")
    paths: dict[str, list[Path]] = {}
    began = time.perf_counter()
    jobs = []
    for made in reports:
        folder = tmp / fmt / made.source_bucket
        folder.mkdir(parents=True)
        for entry in made.manifest["files"]:  # type: ignore[union-attr]
            path = folder / entry["key"].rsplit("/", 1)[1]
            paths.setdefault(made.source_bucket, []).append(path)
            jobs.append((entry["key"], path))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda job: client.download_file(INVENTORY, job[0], str(job[1])), jobs))  # type: ignore[attr-defined]
    download_s = time.perf_counter() - began

    with duckdb.connect() as con:
        began = time.perf_counter()
        con.execute(
            f"CREATE TABLE registered AS SELECT id FROM read_parquet('{inventory.assets_path}')"
        )
        registry_s = time.perf_counter() - began
        every = paths[STORAGE] + paths[THUMBS]
        progress(f"floor ({fmt}): scanning")
        began = time.perf_counter()
        rows, _ = con.execute(
            f"SELECT count(*), sum(size) FROM {source(fmt, every, decoded=False)}"
        ).fetchone()
        scan_s = time.perf_counter() - began
        progress(f"floor ({fmt}): attributing")
        began, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
        con.execute(
            ATTRIBUTE.replace("{owner}", OWNER)
            .replace("{storage}", source(fmt, paths[STORAGE]))
            .replace("{thumbs}", source(fmt, paths[THUMBS]))
        )
        attribute_s = time.perf_counter() - began
        attribute_cpu_s = cpu_seconds(resource.RUSAGE_SELF) - cpu
        found = {c: list(rest) for c, *rest in con.execute(PER_CUSTOMER).fetchall()}
    mismatches = [] if rows == inventory.objects else [f"scanned {rows:,} rows"]
    mismatches += compare(inventory.truth, found)
    for paths_of_bucket in paths.values():
        for path in paths_of_bucket:
            path.unlink()
    return Floor(download_s, scan_s, attribute_s, attribute_cpu_s, registry_s, mismatches)


def cpu_seconds(who: int) -> float:
    """User and system CPU seconds of this process (all its threads) or of its children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def compare(truth: dict[int, list[int]], found: dict[int, list[int]]) -> list[str]:
    """Customers whose [assets, artefact, thumbnail, adjunct bytes] differ from the truth."""
    return [
        f"customer {c}: expected {expected}, found {found.get(c)}"
        for c, expected in sorted(truth.items())
        if expected[0] and [int(v) for v in found.get(c, [])] != expected
    ]


CUSTOMER_ROWS = (
    'SELECT "Customer", "NumberOfStoredImages", "TotalSizeOfStoredImages",'
    ' "TotalSizeOfThumbnails", "TotalSizeOfStoredAdjuncts", "LastCalculated"'
    ' FROM "CustomerStorage" WHERE "Space" IS NULL'
)


def measure_ours(
    database_url: str,
    env: dict[str, str],
    fmt: str,
    workers: int | None,
    inventory: Inventory,
    created: datetime,
) -> Ours:
    """`storage-calc run --source inventory` on the reports of `fmt`, on emptied figures."""
    with db.connect(database_url) as conn:
        conn.execute('TRUNCATE "ImageStorage"')
        conn.execute('DELETE FROM "CustomerStorage"')
        conn.execute('VACUUM ANALYZE "ImageStorage"')
    command = run_command(
        BUCKETS,
        workers,
        "--source",
        "inventory",
        "--storage-inventory",
        destination(STORAGE, fmt),
        "--thumbs-inventory",
        destination(THUMBS, fmt),
    )
    progress(f"ours ({fmt}): {' '.join(command[1:])}")
    began = datetime.now(UTC)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    sample = timed([[command]], env, check=False)
    ours = Ours(sample, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu)
    if ours.failed:
        return ours
    logged(ours)
    with db.connect(database_url) as conn:
        rows = conn.execute(CUSTOMER_ROWS).fetchall()
        checked = conn.execute(
            'SELECT DISTINCT "LastChecked" FROM "ImageStorage" LIMIT 3'
        ).fetchall()
    found = {c: [n, s, t, a] for c, n, s, t, a, _ in rows}
    ours.mismatches = compare(inventory.truth, found) + [
        f"customer {c}: its row was not written by the run"
        for c, *_, calculated in rows
        if calculated < began
    ]
    if [row[0] for row in checked] != [created]:
        ours.mismatches.append(
            f'"ImageStorage"."LastChecked" is {[str(row[0]) for row in checked]}, not the '
            f"reports' creationTimestamp {created}"
        )
    return ours


def logged(ours: Ours) -> None:
    """The attribution, write and run times the job logs, from its JSON log lines."""
    objects = seconds = writes = None
    for line in ours.sample.stderr.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            event = json.loads(line)
            name = event.get("event")
            if name == "inventory_attributed":
                objects = (objects or 0) + int(event["objects"])
                seconds = (seconds or 0.0) + float(event["seconds"])
            elif name == "customer_calculated" and event.get("write_s") is not None:
                writes = (writes or 0.0) + float(event["write_s"])
            elif name == "run_finished":
                ours.run_s = float(event["duration_s"])
    ours.attributed_objects, ours.attribute_s, ours.write_s = objects, seconds, writes


def rate(rows: int, seconds: float | None) -> str:
    return f"{rows / seconds / 1e6:.2f} M/s" if seconds else "-"


def figure(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=70_000_000)
    parser.add_argument("--assets", type=int, default=10_000_000)
    parser.add_argument("--format", choices=[*FORMATS, "both"], default="both")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--workers", type=int, help="passed to storage-calc run when given")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    formats = FORMATS if args.format == "both" else (args.format,)
    os.environ.update(aws_env())
    inventory = cached_inventory(args.cache, args.assets, args.objects, args.seed)
    name = f"inventory-{args.objects}-{args.assets}-seed{args.seed}"
    with (
        seaweedfs_loaded(
            args.cache,
            name,
            f"{len(inventory.files)} inventory data files",
            lambda url: upload(url, inventory),
        ) as served,
        registered_database(
            args.cache / f"postgres-inventory-{args.assets}-seed{args.seed}",
            registered_ids(inventory),
            platform_schema="current",
        ) as (database_url, register_seconds),
        tempfile.TemporaryDirectory(prefix="storage-calc-inventory-") as tmp,
    ):
        client = s3_client(served.url)
        # milliseconds, as the manifest's creationTimestamp holds it
        now = datetime.fromtimestamp(int(time.time() * 1000) / 1000, UTC)
        reports = put_reports(client, inventory, now)
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL_S3": served.url,
            "STORAGE_CALC_DATABASE_URL": database_url,
        }
        results = {}
        load = os.getloadavg()[0]
        for fmt in formats:
            floor = measure_floor(client, inventory, reports[fmt], fmt, Path(tmp))
            ours = measure_ours(database_url, env, fmt, args.workers, inventory, now)
            (args.cache / f"{name}-ours-{fmt}.log").write_text(ours.sample.stderr)
            results[fmt] = (floor, ours)
    print_results(args, name, inventory, served.load_seconds, register_seconds, results)
    # The floor and the job share the CPU with whatever else runs: a load above the core count
    # shows that the figures above are not those of an idle machine.
    print(
        f"load average (1 min): {load:.1f} before the first measurement, "
        f"{os.getloadavg()[0]:.1f} after the last, on {os.cpu_count()} cores"
    )
    failed = [
        f"{fmt}: {m}"
        for fmt, (floor, ours) in results.items()
        for m in [
            *(f"floor {m}" for m in floor.mismatches),
            *(f"ours {m}" for m in ours.mismatches),
        ]
    ]
    if failed:
        raise SystemExit("figures differ from the ground truth:\n" + "\n".join(failed))
    if any(ours.failed for _, ours in results.values()):
        raise SystemExit(1)


def print_results(
    args: argparse.Namespace,
    name: str,
    inventory: Inventory,
    load_seconds: float,
    register_seconds: float,
    results: dict[str, tuple[Floor, Ours]],
) -> None:
    rows = inventory.objects
    dominant = inventory.truth[1][0]
    print(
        f"inventory: {rows:,} objects over {inventory.assets:,} registered assets of "
        f"{inventory.customers} customers (customer 1: {dominant:,}), {inventory.orphans:,} "
        f"objects of unregistered assets, {inventory.unowned:,} keys no asset can own; "
        f"generated in {inventory.generate_seconds:.0f} s"
    )
    for fmt in FORMATS:
        files = [f for f in inventory.files if f.format == fmt]
        print(
            f"  {fmt}: {len(files)} data files, {inventory.bytes(fmt) / 1e6:,.0f} MB "
            f"({min(f.size for f in files) / 1e6:.0f} to {max(f.size for f in files) / 1e6:.0f} MB "
            "a file)"
        )
    print(
        f"  SeaweedFS loaded in {load_seconds:.0f} s; registry registered and vacuumed in "
        f"{register_seconds:.0f} s"
    )
    header = (
        f"{'format':<8} {'rows':>11} {'download s':>10} {'scan':>11} {'floor s':>8} "
        f"{'floor rate':>11} {'ours s':>7} {'ours rate':>11} {'ours/floor':>10} {'run s':>7} "
        f"{'RSS MiB':>8} {'write s':>8} {'floor CPU s':>11} {'run CPU s':>9}"
    )
    print(header)
    for fmt, (floor, ours) in results.items():
        ratio = floor.attribute_s / ours.attribute_s if ours.attribute_s else None
        print(
            f"{fmt:<8} {rows:>11,} {floor.download_s:>10.1f} {rate(rows, floor.scan_s):>11} "
            f"{floor.attribute_s:>8.1f} {rate(rows, floor.attribute_s):>11} "
            f"{figure(ours.attribute_s):>7} {rate(rows, ours.attribute_s):>11} "
            f"{figure(ratio, '.2f'):>10} {figure(None if ours.failed else ours.sample.wall):>7} "
            f"{ours.sample.rss_mib:>8.0f} {figure(ours.write_s):>8} "
            f"{floor.attribute_cpu_s:>11.1f} {figure(None if ours.failed else ours.cpu_s):>9}"
        )
    print(
        f"targets on Parquet: ours/floor >= {TARGET_RATIO} (the ratio of the rates), run s <= "
        f"{TARGET_RUN_S:.0f}, RSS < {TARGET_RSS_MIB:.0f} MiB; CSV gzip beside it, no target"
    )
    print(
        "download s: the floor's download of the report's data files from SeaweedFS, apart; "
        "scan: count and sum(size) of every row; floor s: owner of every key, sums per asset "
        "and kind, joined with the registered ids (loaded beforehand, "
        + ", ".join(f"{f.registry_s:.1f} s" for f, _ in results.values())
        + "); ours s: the attribution the job logs in inventory_attributed; run s: the whole "
        "process, including the database writes; write s: the sum of the customers' write_s; "
        "floor CPU s and run CPU s: the CPU time (user and system, every thread) of the floor's "
        "attribution and of the whole run of the job, which a busy machine does not inflate as "
        "it does wall times"
    )
    for fmt, (floor, ours) in results.items():
        print(f"{fmt}: the job's log is in {args.cache}/{name}-ours-{fmt}.log")
        if ours.failed:
            print(
                f"{fmt}: storage-calc run --source inventory FAILED (exit "
                f"{ours.sample.returncode}) after {ours.sample.wall:.1f} s; the end of its log:\n"
                + "\n".join(ours.sample.stderr.strip().splitlines()[-5:]),
                file=sys.stdout,
            )
        elif ours.attributed_objects is None:
            print(f"{fmt}: the job logged no inventory_attributed event")
        elif ours.attributed_objects != rows:
            print(f"{fmt}: the job logged {ours.attributed_objects:,} objects attributed")
        for who, found in (("floor", floor.mismatches), ("ours", ours.mismatches)):
            if not found and not (who == "ours" and ours.failed):
                print(f"{fmt}: {who}'s figures equal the ground truth for every customer")


if __name__ == "__main__":
    main()
