"""A generated S3 Inventory of a platform-shaped pair of buckets, written as AWS writes it.

The registry is `--assets` asset ids over a spread of customers of which customer 1 holds most,
with a few awkward ids (spaces, `+`, `%`, non-ASCII, characters CSV must quote); the buckets hold
exactly `--objects` objects in the platform's key layout: artefacts (`{id}`, `{id}/original`,
AV outputs, `info.json`, some `{id}/adjuncts/...`) in the storage bucket, thumbnails in the
thumbnails bucket, objects of unregistered assets (orphans) and keys no asset can own.

The data files of both formats are written in the same pass over the same rows: Parquet
(Snappy, the schema AWS declares in `fileSchema`) and CSV (GZIP, no header, every value quoted,
keys URL-encoded as `quote_plus` with `/` kept), rows in no key order, a few million rows a
file. Everything goes to a directory of the cache with the ground truth per customer; a
directory is used again only beside its marker, written once every file was written.

Manifests are not kept: `write_report` writes a dated report folder (`manifest.json` and
`manifest.checksum`, and the Hive `symlink.txt`) for the data files at the moment of the run,
since a job refuses reports older than its maximum age.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_plus

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.process import progress

STORAGE = "bench-storage"
THUMBS = "bench-thumbs"
INVENTORY = "bench-inventory"
PREFIX = "inventory"  # the configurations' destination prefix
FORMATS = ("parquet", "csv")
CONFIG_IDS = {"parquet": "daily-parquet", "csv": "daily-csv"}
MARKER = "complete.json"
ASSETS_FILE = "assets.parquet"  # the registered ids, for the registry and the floor
ROWS_PER_FILE = 5_000_000
ASSET_CHUNK = 500_000

# The part of `fileSchema` for the fields these inventories have, as AWS writes it.
CSV_SCHEMA = "Bucket, Key, Size, LastModifiedDate, StorageClass"
PARQUET_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
    "optional binary storage_class (UTF8); }"
)
ARROW_SCHEMA = pa.schema(
    [
        pa.field("bucket", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("last_modified_date", pa.timestamp("ms", tz="UTC")),
        pa.field("storage_class", pa.string()),
    ]
)

# Customer 1 holds most assets, over a few spaces; the others share the rest, the first of
# them more than the last. Ids include 10 and 100 beside 1, and the largest int4.
OTHER_CUSTOMERS = [*range(2, 31), 100, 1000, 12345, 99999, 2147483647]
DOMINANT_SHARE = 0.8
DOMINANT_SPACES = [0.55, 0.2, 0.1, 0.06, 0.04, 0.03, 0.01, 0.01]
AWKWARD_SHARE = 1e-4
AWKWARD = [
    "with space {n}",
    "a+b+{n}",
    "100%-{n}",
    "x%2F{n}",
    "café-{n}",
    "日本語の画像-{n}",
    "ümlaut ß {n}",
    "emoji-😀-{n}",
    "comma,{n}",
    'dquote"{n}',
    "semi;colon={n}&q?{n}",
    "hash#{n}",
    "tilde~{n}.jp2",
    "star*{n}(1)",
]

IMAGE, AUDIO, VIDEO, EMPTY = 0, 1, 2, 3
KIND_SHARES = [0.87, 0.05, 0.05, 0.03]
ARTEFACTS = {
    IMAGE: ["", "/original", "/info/iiif-img/3/info.json"],
    AUDIO: ["/full/max/default.mp3", "/original", "/metadata"],
    VIDEO: ["/full/full/max/max/0/default.mp4", "/original", "/metadata"],
}
THUMBNAILS = {
    IMAGE: ["/open/100.jpg", "/open/200.jpg", "/open/400.jpg", "/s.json"],
    AUDIO: ["/low.jpg"],
    VIDEO: ["/low.jpg", "/s.json"],
}
EXTRA_THUMBNAILS = ["/open/1000.jpg", "/full/100,200/0/default.jpg", "/open/800.jpg"]
ADJUNCTS = ["/adjuncts/transcript.vtt", "/adjuncts/alto.xml", "/adjuncts/annotations.json"]
ADJUNCT_SHARE = 0.08
ORPHAN_SHARE = 0.01  # of the objects
UNOWNED_SHARE = 0.002  # of the objects
# byte ranges by what the suffix names
SIZES = {
    "": (200_000, 8_000_000),
    "/original": (500_000, 40_000_000),
    "/metadata": (500, 20_000),
    "/info/iiif-img/3/info.json": (400, 2_000),
    "/s.json": (100, 1_000),
}
AV_SIZE = (2_000_000, 400_000_000)
THUMB_SIZE = (2_000, 200_000)
ADJUNCT_SIZE = (1_000, 2_000_000)
CLASSES = ["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]
CLASS_SHARES = [0.9, 0.05, 0.04, 0.01]
# Objects are written in batches: their times are drawn from a pool, which is formatted once.
MODIFIED_TIMES = pa.array(
    np.random.default_rng(0).integers(1_500_000_000, 1_780_000_000, size=200_000) * 1000
).cast(pa.timestamp("ms", tz="UTC"))
MODIFIED_TEXTS = pc.strftime(MODIFIED_TIMES, format="%Y-%m-%dT%H:%M:%SZ")  # ...:58.000Z


@dataclass(frozen=True)
class DataFile:
    bucket: str  # the source bucket it lists
    format: str
    name: str  # `{uuid}.parquet` or `{uuid}.csv.gz`
    size: int
    md5: str
    rows: int


@dataclass(frozen=True)
class Inventory:
    """The cached data files and what they describe."""

    directory: Path
    assets: int
    objects: int
    orphans: int  # objects of unregistered assets
    unowned: int  # objects no asset can own
    customers: int
    files: list[DataFile]
    # customer -> [registered assets, artefact bytes, thumbnail bytes, adjunct bytes]
    truth: dict[int, list[int]]
    generate_seconds: float

    def path(self, data_file: DataFile) -> Path:
        return self.directory / data_file.bucket / data_file.format / data_file.name

    def bytes(self, fmt: str) -> int:
        return sum(f.size for f in self.files if f.format == fmt)

    @property
    def assets_path(self) -> Path:
        return self.directory / ASSETS_FILE


def data_key(source_bucket: str, fmt: str, name: str) -> str:
    """The key of a data file in the inventory bucket, as AWS places it."""
    return f"{PREFIX}/{source_bucket}/{CONFIG_IDS[fmt]}/data/{name}"


def destination(source_bucket: str, fmt: str) -> str:
    """The S3 URL of a configuration's destination, as an operator names it to the job."""
    return f"s3://{INVENTORY}/{PREFIX}/{source_bucket}/{CONFIG_IDS[fmt]}/"


def cached_inventory(cache: Path, assets: int, objects: int, seed: int) -> Inventory:
    """The inventory of `cache/inventory-OBJECTS-ASSETS-seedN`, generated now if the directory
    has no marker."""
    directory = cache / f"inventory-{objects}-{assets}-seed{seed}"
    marker = directory / MARKER
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        progress(f"generating {objects:,} objects over {assets:,} assets in {directory}")
        began = time.perf_counter()
        found = generate(directory, assets, objects, seed)
        found["generate_seconds"] = time.perf_counter() - began
        written = directory / f"{MARKER}.new"
        written.write_text(json.dumps(found, indent=1))
        written.rename(marker)
    else:
        progress(f"reusing {directory}")
    found = json.loads(marker.read_text())
    return Inventory(
        directory=directory,
        assets=found["assets"],
        objects=found["objects"],
        orphans=found["orphans"],
        unowned=found["unowned"],
        customers=len(found["truth"]),
        files=[DataFile(**f) for f in found["files"]],
        truth={int(c): v for c, v in found["truth"].items()},
        generate_seconds=found["generate_seconds"],
    )


@dataclass
class Registry:
    """Every registered asset's customer, space, kind and objects; ids are made a chunk at a
    time."""

    customer_ids: np.ndarray  # the customers, indexed by `customer`
    customer: np.ndarray
    space: np.ndarray
    kind: np.ndarray
    adjuncts: np.ndarray
    extra_thumbs: np.ndarray
    awkward: dict[int, str]

    def ids(self, start: int, stop: int) -> pa.Array:
        index = np.arange(start, stop)
        names = pc.binary_join_element_wise(
            "b", pc.utf8_lpad(pc.cast(pa.array(index), pa.string()), 9, "0"), ""
        )
        odd = [n for n in range(start, stop) if n in self.awkward] if self.awkward else []
        if odd:
            mask = np.zeros(stop - start, dtype=bool)
            mask[np.array(odd) - start] = True
            names = pc.replace_with_mask(
                names, pa.array(mask), pa.array([self.awkward[n] for n in odd])
            )
        return owner_ids(
            self.customer_ids[self.customer[start:stop]], self.space[start:stop], names
        )


def owner_ids(customers: np.ndarray, spaces: np.ndarray, names: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(
        pc.cast(pa.array(customers), pa.string()),
        pc.cast(pa.array(spaces), pa.string()),
        names,
        "/",
    )


def draw_owners(
    rng: np.random.Generator, count: int, customers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Customer indexes and spaces of `count` assets: customer index 0 (customer 1) holds
    DOMINANT_SHARE of them over its spaces, the others the rest, Zipf-like."""
    others = np.arange(1, customers)
    weights = 1.0 / others
    shares = np.concatenate([[DOMINANT_SHARE], (1 - DOMINANT_SHARE) * weights / weights.sum()])
    customer = rng.choice(customers, size=count, p=shares).astype(np.int32)
    dominant_spaces = np.array(DOMINANT_SPACES) / sum(DOMINANT_SPACES)
    space = rng.choice(len(dominant_spaces), size=count, p=dominant_spaces).astype(np.int32) + 1
    # Customer k > 0 has 1 + (k % 4) spaces.
    other = customer > 0
    space[other] = 1 + rng.integers(0, 1_000_000, size=int(other.sum())) % (1 + customer[other] % 4)
    return customer, space


def plan(assets: int, objects: int, seed: int) -> tuple[Registry, int, int]:
    """The registry and its objects per asset; the orphan and unowned objects' counts. Every
    draw that decides the registered ids comes first, so that they depend on `assets` and
    `seed` alone."""
    rng = np.random.default_rng(seed)
    customer_ids = np.array([1, *OTHER_CUSTOMERS], dtype=np.int64)
    customer, space = draw_owners(rng, assets, len(customer_ids))
    awkward_count = max(len(AWKWARD), int(assets * AWKWARD_SHARE))
    picked = rng.choice(assets, size=min(assets, awkward_count), replace=False)
    awkward = {int(n): AWKWARD[i % len(AWKWARD)].format(n=n) for i, n in enumerate(picked)}

    kind = rng.choice(4, size=assets, p=KIND_SHARES).astype(np.int8)
    adjuncts = np.where(
        (kind != EMPTY) & (rng.random(assets) < ADJUNCT_SHARE), rng.integers(1, 4, assets), 0
    ).astype(np.int8)
    extra = np.zeros(assets, dtype=np.int8)
    orphans = 2 * int(objects * ORPHAN_SHARE / 2)  # one artefact and one thumbnail each
    unowned = int(objects * UNOWNED_SHARE)
    base = {k: len(ARTEFACTS[k]) + len(THUMBNAILS[k]) for k in ARTEFACTS}
    counts = np.array([base[IMAGE], base[AUDIO], base[VIDEO], 0])[kind]
    missing = objects - orphans - unowned - int(counts.sum()) - int(adjuncts.sum())
    if missing < 0:
        raise SystemExit(f"{objects:,} objects are too few for {assets:,} assets: raise --objects")
    while missing > 0:
        room = np.flatnonzero((kind == IMAGE) & (extra < len(EXTRA_THUMBNAILS)))
        if room.size == 0:
            raise SystemExit(f"{objects:,} objects are too many for {assets:,} assets")
        chosen = rng.choice(room, size=min(missing, room.size), replace=False)
        extra[chosen] += 1
        missing -= chosen.size
    registry = Registry(customer_ids, customer, space, kind, adjuncts, extra, awkward)
    return registry, orphans, unowned


class Rows:
    """Rows of one bucket under construction: keys, sizes and, for the ground truth, the
    customer index and kind of figure of registered objects (-1 for others)."""

    def __init__(self) -> None:
        self.keys: list[pa.Array] = []
        self.sizes: list[np.ndarray] = []
        self.customers: list[np.ndarray] = []
        self.figures: list[np.ndarray] = []

    def add(self, keys: pa.Array, sizes: np.ndarray, customers: np.ndarray, figure: int) -> None:
        self.keys.append(keys)
        self.sizes.append(sizes)
        self.customers.append(customers)
        self.figures.append(np.full(len(keys), figure, dtype=np.int8))


ARTEFACT, THUMBNAIL, ADJUNCT = 1, 2, 3


def suffixed(ids: pa.Array, suffix: str) -> pa.Array:
    return ids if not suffix else pc.binary_join_element_wise(ids, suffix, "")


def chunk_rows(
    registry: Registry,
    start: int,
    stop: int,
    orphans: tuple[int, int],
    unowned: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[Rows, Rows]:
    """Storage and thumbnail rows of the registered assets `start:stop`, and of the orphan
    and unowned objects of the ranges given."""
    storage, thumbs = Rows(), Rows()
    ids = registry.ids(start, stop)
    kind = registry.kind[start:stop]
    customer = registry.customer[start:stop]

    def sizes(low_high: tuple[int, int], count: int) -> np.ndarray:
        return rng.integers(*low_high, size=count, dtype=np.int64)

    for k in ARTEFACTS:
        which = np.flatnonzero(kind == k)
        chosen, owners = ids.take(pa.array(which)), customer[which]
        for suffix in ARTEFACTS[k]:
            span = AV_SIZE if k != IMAGE and suffix.startswith("/full") else SIZES[suffix]
            storage.add(suffixed(chosen, suffix), sizes(span, which.size), owners, ARTEFACT)
        for suffix in THUMBNAILS[k]:
            span = SIZES.get(suffix, THUMB_SIZE)
            thumbs.add(suffixed(chosen, suffix), sizes(span, which.size), owners, THUMBNAIL)
    for n, suffix in enumerate(ADJUNCTS):
        which = np.flatnonzero(registry.adjuncts[start:stop] > n)
        keys = suffixed(ids.take(pa.array(which)), suffix)
        storage.add(keys, sizes(ADJUNCT_SIZE, which.size), customer[which], ADJUNCT)
    for n, suffix in enumerate(EXTRA_THUMBNAILS):
        which = np.flatnonzero(registry.extra_thumbs[start:stop] > n)
        keys = suffixed(ids.take(pa.array(which)), suffix)
        thumbs.add(keys, sizes(THUMB_SIZE, which.size), customer[which], THUMBNAIL)

    # orphans: assets nobody registered, one artefact and one thumbnail each
    first, last = orphans
    if last > first:
        owners, spaces = draw_owners(rng, last - first, len(registry.customer_ids))
        names = pc.binary_join_element_wise(
            "orphan-", pc.cast(pa.array(np.arange(first, last)), pa.string()), ""
        )
        orphan_ids = owner_ids(registry.customer_ids[owners], spaces, names)
        none = np.full(last - first, -1, dtype=np.int32)
        storage.add(
            suffixed(orphan_ids, "/original"), sizes(SIZES["/original"], last - first), none, -1
        )
        thumbs.add(suffixed(orphan_ids, "/open/100.jpg"), sizes(THUMB_SIZE, last - first), none, -1)
    # keys no asset can own: no customer and space, a space with a leading zero, too short
    first, last = unowned
    if last > first:
        numbers = [str(n) for n in range(first, last)]
        patterns = ["transient/{n}", "_staging/1/1/b{n}", "1/01/b{n}", "1/{n}", "01/1/b{n}"]
        keys = pa.array([patterns[i % len(patterns)].format(n=n) for i, n in enumerate(numbers)])
        storage.add(keys, sizes(THUMB_SIZE, last - first), np.full(last - first, -1), -1)
    return storage, thumbs


class Files:
    """The data files of one bucket in one format, a new one every ROWS_PER_FILE rows."""

    def __init__(self, directory: Path, bucket: str, fmt: str) -> None:
        self.directory = directory / bucket / fmt
        self.directory.mkdir(parents=True)
        self.bucket, self.format = bucket, fmt
        self.done: list[DataFile] = []
        self.current: Path | None = None
        self.writer: pq.ParquetWriter | gzip.GzipFile | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            suffix = ".parquet" if self.format == "parquet" else ".csv.gz"
            self.current = (
                self.directory / f"{uuid.UUID(int=RANDOM.getrandbits(128), version=4)}{suffix}"
            )
            if self.format == "parquet":
                self.writer = pq.ParquetWriter(
                    self.current,
                    ARROW_SCHEMA,
                    compression="snappy",
                    use_dictionary=["bucket", "storage_class"],
                )
            else:
                self.writer = gzip.open(self.current, "wb", compresslevel=6)
        if self.format == "parquet":
            self.writer.write_table(table, row_group_size=1 << 20)
        else:
            pacsv.write_csv(
                as_csv(table),
                self.writer,
                pacsv.WriteOptions(include_header=False, quoting_style="all_valid"),
            )
        self.rows += len(table)
        if self.rows >= ROWS_PER_FILE:
            self.close()

    def close(self) -> None:
        if self.writer is None or self.current is None:
            return
        self.writer.close()
        digest = hashlib.md5()
        with self.current.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        self.done.append(
            DataFile(
                self.bucket,
                self.format,
                self.current.name,
                self.current.stat().st_size,
                digest.hexdigest(),
                self.rows,
            )
        )
        self.writer, self.current, self.rows = None, None, 0


RANDOM = __import__("random").Random(0)  # the files' names only


def url_encoded(keys: pa.Array) -> pa.Array:
    """Keys as AWS writes them in CSV inventories: `quote_plus` with `/` kept. Only keys with
    a character it changes go through Python."""
    needs = pc.match_substring_regex(keys, r"[^A-Za-z0-9_.\-~/]")
    if not pc.any(needs).as_py():
        return keys
    which = np.flatnonzero(needs.to_numpy(zero_copy_only=False))
    encoded = [quote_plus(k, safe="/") for k in keys.take(pa.array(which)).to_pylist()]
    mask = np.zeros(len(keys), dtype=bool)
    mask[which] = True
    return pc.replace_with_mask(keys, pa.array(mask), pa.array(encoded, pa.string()))


def as_csv(table: pa.Table) -> pa.Table:
    return pa.table(
        {
            "bucket": table["bucket"],
            "key": url_encoded(table["key"].combine_chunks()),
            "size": table["size"],
            "last_modified_date": MODIFIED_TEXTS.take(
                pc.index_in(table["last_modified_date"], MODIFIED_TIMES)
            ),
            "storage_class": table["storage_class"],
        }
    )


def generate(directory: Path, assets: int, objects: int, seed: int) -> dict[str, object]:
    registry, orphans, unowned = plan(assets, objects, seed)
    rng = np.random.default_rng(seed + 1)
    RANDOM.seed(seed)
    write_assets(directory / ASSETS_FILE, registry)
    files = {(b, f): Files(directory, b, f) for b in (STORAGE, THUMBS) for f in FORMATS}
    customers = len(registry.customer_ids)
    truth = np.zeros((customers, 4), dtype=np.int64)
    truth[:, 0] = np.bincount(registry.customer, minlength=customers)
    chunks = max(1, -(-assets // ASSET_CHUNK))

    def share(total: int, n: int) -> tuple[int, int]:
        return total * n // chunks, total * (n + 1) // chunks

    # The files are written on other threads (pyarrow and zlib release the GIL) while the
    # next chunk is made; each file's writes stay in order, one chunk's after the other's.
    pool = ThreadPoolExecutor(len(files))
    pending: list[Future[None]] = []
    for n in range(chunks):
        start, stop = n * ASSET_CHUNK, min(assets, (n + 1) * ASSET_CHUNK)
        storage, thumbs = chunk_rows(
            registry, start, stop, share(orphans // 2, n), share(unowned, n), rng
        )
        tables = []
        for bucket, rows in ((STORAGE, storage), (THUMBS, thumbs)):
            table = as_table(bucket, rows, rng)
            owners, figures = np.concatenate(rows.customers), np.concatenate(rows.figures)
            sizes = np.concatenate(rows.sizes)
            for figure in (ARTEFACT, THUMBNAIL, ADJUNCT):
                mine = figures == figure
                truth[:, figure] += np.bincount(
                    owners[mine], weights=sizes[mine], minlength=customers
                ).astype(np.int64)
            tables.append((bucket, table))
        for future in pending:
            future.result()
        pending = [
            pool.submit(files[bucket, fmt].write, table)
            for bucket, table in tables
            for fmt in FORMATS
        ]
        progress(f"  {stop:,} of {assets:,} assets made")
    for future in pending:
        future.result()
    pool.shutdown()
    for writer in files.values():
        writer.close()
    written = [f for w in files.values() for f in w.done]
    if sum(f.rows for f in written) != objects * len(FORMATS):
        raise SystemExit(f"wrote {sum(f.rows for f in written)} rows, expected {objects} a format")
    return {
        "assets": assets,
        "objects": objects,
        "orphans": orphans,
        "unowned": unowned,
        "files": [f.__dict__ for f in written],
        "truth": {
            str(int(c)): [int(v) for v in row]
            for c, row in zip(registry.customer_ids, truth, strict=True)
        },
    }


def as_table(bucket: str, rows: Rows, rng: np.random.Generator) -> pa.Table:
    """The rows as the inventory lists them: in no key order."""
    keys = pa.chunked_array(rows.keys, pa.string()).combine_chunks()
    count = len(keys)
    order = pa.array(rng.permutation(count))
    classes = pa.array(CLASSES).take(pa.array(rng.choice(len(CLASSES), count, p=CLASS_SHARES)))
    modified = rng.integers(0, len(MODIFIED_TIMES), size=count)
    table = pa.table(
        [
            pa.repeat(pa.scalar(bucket, pa.string()), count),
            keys,
            pa.array(np.concatenate(rows.sizes)),
            MODIFIED_TIMES.take(pa.array(modified)),
            classes,
        ],
        schema=ARROW_SCHEMA,
    )
    return table.take(order)


def write_assets(path: Path, registry: Registry) -> None:
    writer = pq.ParquetWriter(path, pa.schema([pa.field("id", pa.string(), nullable=False)]))
    with writer:
        for start in range(0, len(registry.customer), ASSET_CHUNK):
            stop = min(len(registry.customer), start + ASSET_CHUNK)
            writer.write_table(pa.table({"id": registry.ids(start, stop)}, schema=writer.schema))


def registered_ids(inventory: Inventory) -> Iterator[str]:
    for batch in pq.ParquetFile(inventory.assets_path).iter_batches(batch_size=100_000):
        yield from batch.column(0).to_pylist()


@dataclass(frozen=True)
class Report:
    """A report folder written for a run: where its manifest is, and the files it names."""

    source_bucket: str
    format: str
    folder: str  # the key prefix of `YYYY-MM-DDTHH-MMZ/`
    manifest: dict[str, object]


def report(
    inventory: Inventory, source_bucket: str, fmt: str, now: datetime
) -> tuple[Report, dict[str, bytes]]:
    """A report dated `now` for the cached data files of `source_bucket` in `fmt`: the folder
    and the objects (key -> bytes) to put in the inventory bucket, as AWS writes them."""
    base = f"{PREFIX}/{source_bucket}/{CONFIG_IDS[fmt]}"
    folder = f"{base}/{now.astimezone(UTC):%Y-%m-%dT%H-%MZ}"
    files = [f for f in inventory.files if f.bucket == source_bucket and f.format == fmt]
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{INVENTORY}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(now.timestamp() * 1000)),
        "fileFormat": "Parquet" if fmt == "parquet" else "CSV",
        "fileSchema": PARQUET_SCHEMA if fmt == "parquet" else CSV_SCHEMA,
        "files": [
            {"key": data_key(source_bucket, fmt, f.name), "size": f.size, "MD5checksum": f.md5}
            for f in files
        ],
    }
    body = json.dumps(manifest, indent=4).encode()
    symlink = "".join(
        f"s3://{INVENTORY}/{data_key(source_bucket, fmt, f.name)}\n" for f in files
    ).encode()
    objects = {
        f"{folder}/manifest.json": body,
        f"{folder}/manifest.checksum": hashlib.md5(body).hexdigest().encode(),
        f"{base}/hive/dt={now.astimezone(UTC):%Y-%m-%d-%H-%M}/symlink.txt": symlink,
    }
    return Report(source_bucket, fmt, folder, manifest), objects
