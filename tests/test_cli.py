"""The command line in-process: exit codes, stdout for results, one stderr line per error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import Result

from storage_calc import db
from tests.conftest import STORAGE, THUMBS

Invoke = Callable[..., Result]


def errors(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def sample(register: Callable[..., None], put: Callable[..., None]) -> None:
    register("2/5/foo", "2/5/foo-2", "2/6/bar")
    put(STORAGE, {"2/5/foo": 100, "2/5/foo/original": 1000, "2/5/foo-2": 200, "2/6/bar": 300})
    put(THUMBS, {"2/5/foo/open/100.jpg": 5})


def test_run_computes_and_exits_0(sample: None, invoke: Invoke, conn: Any) -> None:
    result = invoke("run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert conn.execute(
        'SELECT "NumberOfStoredImages", "TotalSizeOfStoredImages", "TotalSizeOfThumbnails"'
        ' FROM "CustomerStorage" WHERE "Customer" = 2 AND "Space" = 0'
    ).fetchone() == (3, 1600, 5)


def test_every_log_event_of_a_run_carries_its_run_id(
    sample: None, invoke: Invoke, register: Callable[..., None], conn: Any
) -> None:
    invoke("run")
    register("2/5/late")
    conn.execute('UPDATE "Images" SET "Space" = 6 WHERE "Id" = \'2/5/late\'')
    conn.execute(
        "INSERT INTO \"StoragePolicies\" VALUES ('tiny', 1, 1);"
        ' UPDATE "CustomerStorage" SET "StoragePolicy" = \'tiny\''
    )
    result = invoke("run")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"customer_calculated", "misfiled_assets", "quota_exceeded", "run_finished"} <= {
        e["event"] for e in events
    }
    assert {e["run_id"] for e in events} == {2}


def test_run_logs_one_event_per_customer_and_a_summary_as_json(
    sample: None, invoke: Invoke
) -> None:
    result = invoke("run")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events] == ["customer_calculated", "run_finished"]
    assert events[1] | {"timestamp": None, "duration_s": None} == {
        "run_id": 1,
        "scope": "all",
        "layout": "seed",
        "shard": None,
        "dry_run": False,
        "outcome": "done",
        "customers": 1,
        "failed": 0,
        "locked": 0,
        "objects": 5,
        "bytes": 1605,
        "assets": 3,
        "orphans": 0,
        "orphan_bytes": 0,
        "unattributed": 0,
        "misfiled": 0,
        "changes": 3,
        "drift_bytes": 1605,
        "error": None,
        "reconnections": 0,
        "event": "run_finished",
        "level": "info",
        "timestamp": None,
        "duration_s": None,
    }


def test_dry_run_prints_one_json_object_per_changed_scope(
    sample: None, invoke: Invoke, conn: Any
) -> None:
    result = invoke("run", "--dry-run", "--customer", "2", "--space", "6")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {
            "customer": 2,
            "space": 0,
            "before": {
                "numberOfStoredImages": 0,
                "totalSizeOfStoredImages": 0,
                "totalSizeOfThumbnails": 0,
            },
            "after": {
                "numberOfStoredImages": 1,
                "totalSizeOfStoredImages": 300,
                "totalSizeOfThumbnails": 0,
            },
            "delta": {
                "numberOfStoredImages": 1,
                "totalSizeOfStoredImages": 300,
                "totalSizeOfThumbnails": 0,
            },
        },
        {
            "customer": 2,
            "space": 6,
            "before": {
                "numberOfStoredImages": 0,
                "totalSizeOfStoredImages": 0,
                "totalSizeOfThumbnails": 0,
            },
            "after": {
                "numberOfStoredImages": 1,
                "totalSizeOfStoredImages": 300,
                "totalSizeOfThumbnails": 0,
            },
            "delta": {
                "numberOfStoredImages": 1,
                "totalSizeOfStoredImages": 300,
                "totalSizeOfThumbnails": 0,
            },
        },
    ]
    assert conn.execute('SELECT count(*) FROM "CustomerStorage"').fetchone() == (0,)


def test_run_asset_refreshes_the_asset(sample: None, invoke: Invoke, conn: Any) -> None:
    assert invoke("run", "--asset", "2/5/foo").exit_code == 0
    assert conn.execute('SELECT "Id", "Size", "ThumbnailSize" FROM "ImageStorage"').fetchall() == [
        ("2/5/foo", 1100, 5)
    ]


def test_run_shard_with_no_customers_exits_0(sample: None, invoke: Invoke, conn: Any) -> None:
    # Of four shards, space 5 of customer 2 has shard 3 to itself, space 6 and the rest of the
    # customer go to its home shard 2 (storage_calc.shards): shard 1 has nothing to compute.
    result = invoke("run", "--shard", "1/4")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["event"], e["shard"], e["outcome"], e["customers"]) for e in events] == [
        ("run_finished", "1/4", "done", 0)
    ]
    assert conn.execute('SELECT count(*) FROM "CustomerStorage"').fetchone() == (0,)


def test_shards_take_the_index_from_job_completion_index(
    register: Callable[..., None], invoke: Invoke, conn: Any
) -> None:
    register("1/1/a", "2/1/a", "3/1/a", "4/1/a")
    result = invoke("run", "--shards", "2", env={"JOB_COMPLETION_INDEX": "1"})
    assert result.exit_code == 0, result.stderr
    customers = conn.execute('SELECT DISTINCT "Customer" FROM "ImageStorage" ORDER BY 1')
    assert customers.fetchall() == [(3,), (4,)]


def test_shards_without_job_completion_index_exit_2(invoke: Invoke) -> None:
    result = invoke("run", "--shards", "2", env={"JOB_COMPLETION_INDEX": None})
    assert result.exit_code == 2
    assert (
        result.stderr
        == "Error: --shards needs JOB_COMPLETION_INDEX, which Kubernetes Indexed Jobs set\n"
    )


@pytest.mark.parametrize(
    "variables",
    [
        {"STORAGE_CALC_CUSTOMER": "3", "STORAGE_CALC_DRY_RUN": "1"},
        {"STORAGE_CALC_CUSTOMER": "2", "STORAGE_CALC_SPACE": "6"},
        {"STORAGE_CALC_ASSET": "3/1/a"},
        {"STORAGE_CALC_SHARD": "1/2"},
        {"STORAGE_CALC_SHARDS": "2", "JOB_COMPLETION_INDEX": "1"},
    ],
)
def test_scope_and_dry_run_variables_change_nothing(
    sample: None, register: Callable[..., None], invoke: Invoke, conn: Any,
    variables: dict[str, str],
) -> None:  # fmt: skip
    register("3/1/a")
    result = invoke("run", env=variables)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert conn.execute('SELECT "Id" FROM "ImageStorage" ORDER BY 1').fetchall() == [
        ("2/5/foo",), ("2/5/foo-2",), ("2/6/bar",), ("3/1/a",),
    ]  # fmt: skip


def test_the_reports_customer_filter_has_no_variable(
    sample: None, register: Callable[..., None], invoke: Invoke
) -> None:
    register("3/1/a")
    invoke("run")
    result = invoke("report", "usage", "--json", env={"STORAGE_CALC_CUSTOMER": "3"})
    assert [row["customer"] for row in json.loads(result.stdout)["customers"]] == [2, 3]


def test_installation_settings_come_from_their_variables(sample: None, invoke: Invoke) -> None:
    result = invoke("run", env={"STORAGE_CALC_THUMBS_BUCKET": "no-such-bucket"})
    assert result.exit_code == 1
    assert errors(result) == [
        "Error: bucket 'no-such-bucket' does not exist (check --storage-bucket / --thumbs-bucket)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--asset", "2/5"], "'2/5' is not an asset id"),
        (["run", "--customer", "-1"], "-1 is not in the range"),
        (["run", "--customer", "two"], "'two' is not a valid integer"),
        (["run", "--space", "5"], "--space needs --customer"),
        (["run", "--asset", "2/5/a", "--customer", "2"], "--asset cannot be combined"),
        (["run", "--shard", "4/4"], "shard '4/4' is out of range"),
        (
            ["run", "--customer", "2", "--shard", "0/2"],
            "--shard applies to runs over all customers",
        ),
        (["run", "--storage-bucket", "Bad_Bucket"], "'Bad_Bucket' is not a valid S3 bucket name"),
        (["run", "--workers", "0"], "0 is not in the range"),
        (["show", "asset", "nope"], "'nope' is not an asset id"),
        (["show", "customer", "2", "--api-base-url", "ftp://x"], "is not an http(s) URL"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_usage_exits_2_with_one_line(invoke: Invoke, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr


def test_a_failed_customer_exits_1_and_is_named(
    sample: None, invoke: Invoke, fail_listing: Callable[..., None]
) -> None:
    fail_listing("prefix=2%2F")
    result = invoke("run")
    assert result.exit_code == 1
    assert errors(result) == [
        "Error: customer 2: access denied listing s3://dlcs-storage/2/: the credentials need"
        " s3:ListBucket on 'dlcs-storage'",
        "Error: 1 of 1 customers failed",
    ]


def test_a_missing_bucket_exits_1_with_its_name(sample: None, invoke: Invoke) -> None:
    result = invoke("run", "--thumbs-bucket", "no-such-bucket")
    assert result.exit_code == 1
    assert errors(result) == [
        "Error: bucket 'no-such-bucket' does not exist (check --storage-bucket / --thumbs-bucket)"
    ]


def test_an_unreachable_database_exits_1_with_one_line(invoke: Invoke) -> None:
    result = invoke("run", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: cannot connect to the database: ")


def test_every_locked_customer_exits_75(sample: None, invoke: Invoke, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, 2)", (db.LOCK_NAMESPACE,))
        result = invoke("run", "--customer", "2")
    assert result.exit_code == 75
    assert errors(result) == ["Error: every requested customer is being computed by another run"]


def test_show_customer_prints_the_resource(sample: None, invoke: Invoke) -> None:
    invoke("run")
    result = invoke("show", "customer", "2")
    assert result.exit_code == 0
    resource = json.loads(result.stdout)
    assert list(resource) == [
        "@context",
        "@id",
        "@type",
        "numberOfStoredImages",
        "totalSizeOfStoredImages",
        "totalSizeOfThumbnails",
        "lastCalculated",
        "storagePolicy",
    ]
    assert resource["@id"] == "https://api.dlcs.example/customers/2/spaces/0/storage"
    assert resource["numberOfStoredImages"] == 3
    assert resource["lastCalculated"].endswith("Z") and len(resource["lastCalculated"]) == 28


def test_show_space_uses_the_configured_base_url(sample: None, invoke: Invoke) -> None:
    invoke("run")
    result = invoke("show", "customer", "2", "--space", "5", "--api-base-url", "https://x.org/api/")
    resource = json.loads(result.stdout)
    assert resource["@id"] == "https://x.org/api/customers/2/spaces/5/storage"
    assert resource["@context"] == "https://x.org/api/contexts/CustomerStorage.jsonld"
    assert resource["storagePolicy"] == "https://x.org/api/storagePolicies/default"


def test_show_asset_prints_the_resource(sample: None, invoke: Invoke) -> None:
    invoke("run")
    resource = json.loads(invoke("show", "asset", "2/5/foo").stdout)
    assert resource["@id"] == "https://api.dlcs.example/customers/2/spaces/5/images/foo/storage"
    assert (resource["size"], resource["thumbnailSize"], resource["checkingInProgress"]) == (
        1100,
        5,
        False,
    )


def test_show_policy_prints_the_resource(invoke: Invoke) -> None:
    result = invoke("show", "policy", "default")
    assert json.loads(result.stdout) == {
        "@context": "https://api.dlcs.example/contexts/StoragePolicy.jsonld",
        "@id": "https://api.dlcs.example/storagePolicies/default",
        "@type": "vocab:StoragePolicy",
        "maximumNumberOfStoredImages": 1000000000,
        "maximumTotalSizeOfStoredImages": 1125899906842624,
    }


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["show", "customer", "404"], "Error: storage figures of customer 404 not found\n"),
        (
            ["show", "customer", "2", "--space", "9"],
            "Error: storage figures of customer 2 space 9 not found\n",
        ),
        (["show", "asset", "2/5/nope"], "Error: storage figures of asset 2/5/nope not found\n"),
        (["show", "policy", "gold"], "Error: storage policy 'gold' not found\n"),
    ],
)
def test_show_unknown_exits_1_with_one_line(invoke: Invoke, args: list[str], line: str) -> None:
    result = invoke(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", line)


def test_show_before_migrate_says_to_migrate(invoke: Invoke, conn: Any) -> None:
    conn.execute('DROP TABLE "CustomerStorage" CASCADE')
    result = invoke("show", "customer", "2")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: the database has no \"CustomerStorage\"; run 'storage-calc db migrate' first\n"
    )


def test_db_migrate_creates_the_platforms_tables_where_none_exists(
    invoke: Invoke, conn: Any
) -> None:
    conn.execute(
        'DROP TABLE "CustomerStorage", "ImageStorage", "Images", "StoragePolicies" CASCADE'
    )
    result = invoke("db", "migrate")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "created the platform's tables, seed layout",
        "schema is up to date; the platform's tables have the seed layout",
    ]
    assert conn.execute("SELECT to_regclass('\"CustomerStorage\"') IS NOT NULL").fetchone() == (
        True,
    )
