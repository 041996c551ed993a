"""S3 Inventory reports written as AWS writes them, on moto: found and checked by
storage_calc.sources.inventory, summed by storage_calc.sources.inventory_sums."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from storage_calc.config import Tuning, parse_destination
from storage_calc.errors import ConfigError, InventoryError
from storage_calc.model import Destination, Location, LocationKind
from storage_calc.sources import inventory
from storage_calc.sources.inventory import Report
from storage_calc.sources.inventory_source import downloaded
from storage_calc.sources.inventory_sums import InventorySums
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE
from tests.inventories import (
    AWKWARD,
    CREATED,
    DESTINATION,
    INVENTORY,
    PREFIX,
    SNAKE,
    VERSIONS,
    Row,
    write_report,
)  # fmt: skip

MAX_AGE = timedelta(hours=48)


DEFAULTS = Tuning()


def latest(s3: S3Client) -> Report:
    return inventory.latest_report(s3, parse_destination(DESTINATION), STORAGE)


def sums_of(s3: S3Client, directory: Path, tuning: Tuning = DEFAULTS) -> dict[str, tuple[int, int]]:
    """The latest report's objects summed per asset id: (objects, bytes)."""
    report = latest(s3)
    directory.mkdir(exist_ok=True)
    location = Location(STORAGE, "", LocationKind.ARTEFACT)
    sums = InventorySums(directory, False, False, None, tuning)
    try:
        sums.add(downloaded(s3, location, report, directory))
        sums.finish()
        rows = sums.conn.execute("SELECT id, objects, bytes FROM assets").fetchall()
    finally:
        sums.close()
    return {asset_id: (int(objects), int(size)) for asset_id, objects, size in rows}


# --- the destination ---------------------------------------------------------------------


def test_a_destination_url_names_bucket_prefix_source_bucket_and_configuration() -> None:
    assert parse_destination(DESTINATION) == Destination(INVENTORY, PREFIX, STORAGE, "nightly")


def test_a_destination_without_a_prefix_or_its_last_slash_is_read_alike() -> None:
    assert parse_destination(f"s3://{INVENTORY}/{STORAGE}/nightly") == Destination(
        INVENTORY, f"{STORAGE}/nightly/", STORAGE, "nightly"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"https://{INVENTORY}/{STORAGE}/nightly/",
        f"s3://{INVENTORY}/nightly/",
        f"s3://{INVENTORY}/",
        f"s3://{INVENTORY}/reports//nightly/",
        "s3://Not_A_Bucket/dlcs-storage/nightly/",
    ],
)
def test_a_destination_of_another_shape_is_a_one_line_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^inventory destination .*") as error:
        parse_destination(url)
    assert "\n" not in str(error.value)


# --- the newest complete report ----------------------------------------------------------


def test_the_newest_complete_report_is_picked(inventory_s3: S3Client, tmp_path: Path) -> None:
    write_report(inventory_s3, [Row("2/5/old", 1)], created=CREATED - timedelta(days=1))
    folder = write_report(inventory_s3, [Row("2/5/new", 2)])
    report = latest(inventory_s3)
    assert (report.folder, report.created) == (folder, CREATED)
    assert sums_of(inventory_s3, tmp_path) == {"2/5/new": (1, 2)}


def test_a_newer_folder_without_its_checksum_is_skipped_for_the_one_before(
    inventory_s3: S3Client,
) -> None:
    folder = write_report(inventory_s3, [Row("2/5/done", 1)])
    writing = write_report(
        inventory_s3, [Row("2/5/partial", 1)], created=CREATED + timedelta(days=1), checksum=False
    )
    report = latest(inventory_s3)
    assert (report.folder, report.skipped) == (folder, (writing,))


def test_a_checksum_that_does_not_match_its_manifest_is_an_error_not_a_fallback(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/old", 1)], created=CREATED - timedelta(days=1))
    folder = write_report(inventory_s3, [Row("2/5/new", 1)])
    inventory_s3.put_object(Bucket=INVENTORY, Key=f"{folder}manifest.checksum", Body=b"0" * 32)
    with pytest.raises(InventoryError, match=r"manifest\.json has MD5 [0-9a-f]{32}, but its "):
        latest(inventory_s3)


def test_a_manifest_of_another_bucket_is_refused_naming_both(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1, bucket="other")], source="other")
    with pytest.raises(InventoryError, match=r"is of bucket 'other', not 'dlcs-storage'$"):
        latest(inventory_s3)


def test_no_complete_report_is_an_error(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], checksum=False)
    with pytest.raises(InventoryError, match=r"^no complete inventory report under s3://.*: 1 "):
        latest(inventory_s3)


def test_the_manifest_gives_creation_time_format_fields_and_files(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], file_format="Parquet", fields=VERSIONS)
    report = latest(inventory_s3)
    assert report.created == CREATED and report.created.tzinfo is not None
    assert report.file_format == "Parquet"
    assert report.fields == tuple(SNAKE[f] for f in VERSIONS)
    assert [f.key for f in report.files] == [f"{PREFIX}data/202611280100.parquet"]


def test_a_report_without_size_is_refused(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], fields=("Bucket", "Key", "StorageClass"))
    with pytest.raises(InventoryError, match=r"has no size in its fileSchema"):
        latest(inventory_s3)


def test_a_stale_report_is_refused_with_its_creation_time_and_age(
    inventory_s3: S3Client,
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    with pytest.raises(
        InventoryError, match=r"was created at 2026-11-28 01:00 UTC, 50\.5 hours ago, more than "
    ):
        inventory.check_age(
            latest(inventory_s3), MAX_AGE, now=CREATED + timedelta(hours=50, minutes=30)
        )


def test_a_report_younger_than_the_maximum_age_passes(inventory_s3: S3Client) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    inventory.check_age(latest(inventory_s3), MAX_AGE, now=CREATED + timedelta(hours=47))


# --- the data files ----------------------------------------------------------------------


def test_a_data_file_missing_from_the_destination_is_an_error(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    inventory_s3.delete_object(Bucket=INVENTORY, Key=f"{PREFIX}data/202611280100.csv.gz")
    with pytest.raises(InventoryError, match=r"202611280100\.csv\.gz, listed in the manifest, is"):
        sums_of(inventory_s3, tmp_path)


def test_a_data_file_whose_md5_differs_from_the_manifest_is_an_error(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], data=lambda body: body[:-1] + b"X")
    with pytest.raises(InventoryError, match=r"has checksum [0-9a-f]{32}, the manifest says "):
        sums_of(inventory_s3, tmp_path)


def test_a_data_file_whose_size_differs_from_the_manifest_is_an_error(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], data=lambda body: body + b"\0")
    with pytest.raises(InventoryError, match=r"has \d+ bytes, the manifest says \d+$"):
        sums_of(inventory_s3, tmp_path)


def test_a_csv_row_with_a_bad_size_is_named_with_its_file_and_key(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], fields=("Bucket", "Key", "Size"))
    key = f"{PREFIX}data/202611280100.csv.gz"
    rows = b'"dlcs-storage","2/5/a","1"\n"dlcs-storage","2/5/b","2"\n"dlcs-storage","2/5/c","1x"\n'
    rewrite_data_file(inventory_s3, key, gzip.compress(rows))
    with pytest.raises(
        InventoryError,
        match=r"^inventory data file s3://dlcs-inventory/reports/dlcs-storage/nightly/data/"
        r"202611280100\.csv\.gz: key '2/5/c' has size '1x', not a number of bytes$",
    ):
        sums_of(inventory_s3, tmp_path)


def test_a_row_without_a_size_that_is_no_delete_marker_is_malformed(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1), Row("2/5/b", None)], file_format="Parquet")
    with pytest.raises(InventoryError, match=r"\.parquet: key '2/5/b' has size None, not a"):
        sums_of(inventory_s3, tmp_path)


def test_a_flag_other_than_true_or_false_is_malformed(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)], fields=VERSIONS)
    key = f"{PREFIX}data/202611280100.csv.gz"
    row = b'"dlcs-storage","2/5/a","v1","yes","false","1","","","STANDARD"\n'
    rewrite_data_file(inventory_s3, key, gzip.compress(row))
    with pytest.raises(InventoryError, match=r": key '2/5/a' has IsLatest 'yes', not true or f"):
        sums_of(inventory_s3, tmp_path)


def test_a_csv_row_with_too_few_columns_is_one_line_naming_the_report(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1)])
    key = f"{PREFIX}data/202611280100.csv.gz"
    body = gzip.compress(b'"dlcs-storage","2/5/a","1","","",""\n"dlcs-storage","2/5/b"\n')
    rewrite_data_file(inventory_s3, key, body)
    with pytest.raises(
        InventoryError, match=r"^inventory report s3://.*/manifest\.json is unre"
    ) as e:
        sums_of(inventory_s3, tmp_path)
    assert "\n" not in str(e.value)


def rewrite_data_file(s3: S3Client, key: str, body: bytes) -> None:
    """Replaces a data file and keeps the manifest (and its checksum) true to it."""
    manifest_key = f"{PREFIX}2026-11-28T01-00Z/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=INVENTORY, Key=manifest_key)["Body"].read())
    manifest["files"] = [
        {"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()}
    ]
    text = json.dumps(manifest).encode()
    s3.put_object(Bucket=INVENTORY, Key=key, Body=body)
    s3.put_object(Bucket=INVENTORY, Key=manifest_key, Body=text)
    checksum = hashlib.md5(text).hexdigest().encode()
    s3.put_object(Bucket=INVENTORY, Key=manifest_key.replace(".json", ".checksum"), Body=checksum)


def test_a_row_of_another_bucket_is_an_error(inventory_s3: S3Client, tmp_path: Path) -> None:
    write_report(inventory_s3, [Row("2/5/a", 1), Row("2/5/b", 1, bucket="dlcs-thumbs")])
    with pytest.raises(InventoryError, match=r": an object of bucket 'dlcs-thumbs', not of 'dlcs"):
        sums_of(inventory_s3, tmp_path)


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_every_format_gives_the_same_sums_for_awkward_keys(
    inventory_s3: S3Client, tmp_path: Path, file_format: str
) -> None:
    rows = [Row(key, size) for size, key in enumerate(AWKWARD, start=10)]
    write_report(inventory_s3, rows, file_format=file_format)
    assert sums_of(inventory_s3, tmp_path) == {
        "2/5/foo bar": (1, 10), "2/5/a+b": (1, 11), "2/5/%41": (1, 12), "2/5/é": (1, 13),
        "2/5/foo-2": (1, 14),
    }  # fmt: skip


def test_in_csv_a_plus_is_a_space_and_percent_2b_a_plus(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(inventory_s3, [Row("2/5/a+b c", 1)])
    data = inventory_s3.get_object(Bucket=INVENTORY, Key=f"{PREFIX}data/202611280100.csv.gz")
    assert b'"2/5/a%2Bb+c"' in gzip.decompress(data["Body"].read())
    assert sums_of(inventory_s3, tmp_path) == {"2/5/a+b c": (1, 1)}


@pytest.mark.parametrize("file_format", ["CSV", "ORC", "Parquet"])
def test_only_current_versions_are_summed(
    inventory_s3: S3Client, tmp_path: Path, file_format: str
) -> None:
    rows = [
        Row("2/5/a", 5, version_id="v2", is_latest=True),
        Row("2/5/a", 3, version_id="v1", is_latest=False, storage_class="GLACIER"),
        Row("2/5/b", None, version_id="v9", is_delete_marker=True, storage_class=""),
        Row("2/5/b", 4, version_id="v8", is_latest=False),
    ]
    write_report(inventory_s3, rows, file_format=file_format, fields=VERSIONS)
    assert sums_of(inventory_s3, tmp_path) == {"2/5/a": (1, 5)}


def test_a_report_without_version_fields_counts_every_row(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    write_report(
        inventory_s3, [Row("2/5/a", 7), Row("2/5/a/x", 1)], fields=("Bucket", "Key", "Size")
    )
    assert sums_of(inventory_s3, tmp_path) == {"2/5/a": (2, 8)}


def test_without_duckdb_summing_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(InventoryError, match=r"^the inventory source needs: pip install 'storage"):
        InventorySums(tmp_path, False, False, None, DEFAULTS)


def test_the_listing_path_imports_neither_duckdb_nor_pyarrow() -> None:
    code = (
        "import sys, storage_calc.sources.listing, storage_calc.calculator, storage_calc.cli; "
        "print(sorted({'duckdb', 'pyarrow'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_summing_in_partitions_gives_the_sums_of_one(
    inventory_s3: S3Client, tmp_path: Path
) -> None:
    rows = [Row(f"2/5/a{i}/{j}", i * 10 + j) for i in range(40) for j in range(3)]
    write_report(inventory_s3, [*rows, Row("2/x", 1), Row("transient/a", 2)])
    whole = sums_of(inventory_s3, tmp_path / "whole")
    parts = Tuning(partition_bytes=1, max_partitions=7)
    assert sums_of(inventory_s3, tmp_path / "parts", parts) == whole
    assert len(whole) == 40
