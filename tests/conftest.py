"""Shared fixtures: a real PostgreSQL (one database per test), moto S3, and small helpers."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner, Result
from moto import mock_aws
from moto.server import ThreadedMotoServer
from psycopg.conninfo import make_conninfo
from starlette.testclient import TestClient

from storage_calc import auth, db, embedded
from storage_calc.api import create_app
from storage_calc.cli import cli
from storage_calc.config import Settings, parse_location
from storage_calc.model import Billable, LocationKind, Spaces
from storage_calc.sources.listing import S3Client, make_s3_client
from tests.api_keys import SALT, add_customers_table
from tests.databases import admin_connection, created_database, write_customer
from tests.s3_proxy import S3Proxy

# Options leaking in from the environment would change what the CLI tests run.
for name in list(os.environ):
    if name.startswith("STORAGE_CALC_") and name != "STORAGE_CALC_TEST_DATABASE_URL":
        del os.environ[name]

STORAGE = "dlcs-storage"
THUMBS = "dlcs-thumbs"
INVENTORY = "dlcs-inventory"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """STORAGE_CALC_TEST_DATABASE_URL, or an embedded PostgreSQL the session starts itself."""
    url = os.environ.get("STORAGE_CALC_TEST_DATABASE_URL")
    if url:
        return url
    url = embedded.start(tmp_path_factory.mktemp("pg") / "data")
    # The session's own server, gone with it: what survives a crash of the machine is nothing a
    # test checks, and every test creates, writes and drops a database.
    with admin_connection(url) as admin:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            admin.execute(f"ALTER SYSTEM SET {setting} = off")
        admin.execute("SELECT pg_reload_conf()")
    return url


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("STORAGE_CALC_TEST_DATABASE_URL")
    return f"database: {'STORAGE_CALC_TEST_DATABASE_URL' if url else 'embedded PostgreSQL'}"


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    """A database migrated once, copied for every test."""
    name = f"storage_calc_template_{os.getpid()}"
    with admin_connection(server_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    with db.connect(make_conninfo(server_url, dbname=name)) as conn:
        db.migrate(conn)
    yield name
    with admin_connection(server_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with created_database(server_url, template_db) as url:
        yield url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def register(conn: psycopg.Connection[Any]) -> Callable[..., None]:
    """Registers assets in "Images" by id (`c/s/asset`), every NOT NULL column filled as the
    platform's ingest fills it."""

    def register(*asset_ids: str) -> None:
        db.register_assets(conn, asset_ids)

    return register


# The platform's tables in each layout met in the field (LAYOUTS.md), built the way its own
# migrations reach them.
LAYOUT_DDL = {
    "seed": [db.sql_file(path) for path in db.SEED],
    "seed with adjuncts": [db.sql_file(path) for path in db.WITH_ADJUNCTS],
    "current": [db.sql_file(path) for path in db.CURRENT],
}


@pytest.fixture(scope="session")
def layout_templates(server_url: str) -> Iterator[dict[str, str]]:
    """One template database per layout: the platform's tables, then `db migrate`."""
    names = {}
    for layout, statements in LAYOUT_DDL.items():
        name = f"storage_calc_layout_{layout.replace(' ', '_')}_{os.getpid()}"
        with admin_connection(server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        with db.connect(make_conninfo(server_url, dbname=name)) as conn:
            for statement in statements:
                conn.execute(statement)
            db.migrate(conn)
        names[layout] = name
    yield names
    with admin_connection(server_url) as admin:
        for name in names.values():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=list(LAYOUT_DDL))
def layout_url(
    request: pytest.FixtureRequest, server_url: str, layout_templates: dict[str, str]
) -> Iterator[str]:
    """A fresh database whose platform tables have one of the layouts met in the field."""
    with created_database(server_url, layout_templates[request.param]) as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials first, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def s3(aws_env: None) -> Iterator[S3Client]:
    """moto's S3 with both buckets, through the project's own client."""
    with mock_aws():
        client = make_s3_client(max_connections=8)
        client.create_bucket(Bucket=STORAGE)
        client.create_bucket(Bucket=THUMBS)
        yield client


@pytest.fixture
def inventory_s3(s3: S3Client) -> S3Client:
    """moto's S3 with both buckets and the bucket their inventory reports are written to."""
    s3.create_bucket(Bucket=INVENTORY)
    return s3


@pytest.fixture
def put(s3: S3Client) -> Callable[..., None]:
    """Puts objects of the given sizes: put(bucket, {key: size, ...})."""

    def put(bucket: str, objects: dict[str, int]) -> None:
        for key, size in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)

    return put


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, workers=4)


def tuned(settings: Settings, **knobs: int) -> Settings:
    """`settings` with some of the sizes of its `Tuning` changed: small slices, batches or
    partitions reach with a few objects the paths that large customers take."""
    return replace(settings, tuning=replace(settings.tuning, **knobs))


def settings_with_prefixes(database_url: str, storage: str, thumbs: str) -> Settings:
    return Settings(
        database_url=database_url,
        locations=(
            parse_location(storage, LocationKind.ARTEFACT),
            parse_location(thumbs, LocationKind.THUMBNAIL),
        ),
        workers=4,
    )


def error_response(status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
    return AWSResponse("https://s3.test/", status, {}, RawBody(body))


class RawBody:
    """The minimal raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@pytest.fixture
def fail_listing(s3: S3Client) -> Callable[..., None]:
    """Makes every S3 list request whose URL contains `marker` answer `status`/`code`."""

    def fail_listing(marker: str, status: int = 403, code: str = "AccessDenied") -> None:
        def answer(request: Any, **_: Any) -> AWSResponse | None:
            if "list-type=2" in request.url and marker in request.url:
                return error_response(status, code)
            return None

        s3.meta.events.register("before-send.s3.ListObjectsV2", answer)

    return fail_listing


@pytest.fixture
def invoke(
    database_url: str, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Runs the CLI in-process against the test database and moto S3."""
    monkeypatch.setenv("STORAGE_CALC_DATABASE_URL", database_url)
    monkeypatch.setattr("storage_calc.cli.compute.make_s3_client", lambda workers: s3)

    def invoke(*args: str, **kwargs: Any) -> Result:
        return CliRunner().invoke(cli, list(args), **kwargs)

    return invoke


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-test XDG_DATA_HOME, so the default embedded database is the test's own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 as a real HTTP server on 127.0.0.1, for tests that run the CLI as a process."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_proxy(moto_server: str, aws_env: None) -> Iterator[S3Proxy]:
    """A fault-injecting proxy in front of an emptied moto server holding both buckets."""
    reset = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=30).close()
    client = boto3.client("s3", endpoint_url=moto_server)
    client.create_bucket(Bucket=STORAGE)
    client.create_bucket(Bucket=THUMBS)
    proxy = S3Proxy(moto_server)
    yield proxy
    proxy.close()


@pytest.fixture
def server_put(moto_server: str, s3_proxy: S3Proxy) -> Callable[..., None]:
    """Puts objects of the given sizes on the moto server: server_put(bucket, {key: size})."""
    client = boto3.client("s3", endpoint_url=moto_server)

    def put(bucket: str, objects: dict[str, int]) -> None:
        for key, size in objects.items():
            client.put_object(Bucket=bucket, Key=key, Body=b"\0" * size)

    return put


@pytest.fixture
def process_env(database_url: str, s3_proxy: S3Proxy) -> dict[str, str]:
    """The environment of a `storage-calc` process using the test database and the proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE_CALC_")}
    env |= {
        "STORAGE_CALC_DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL_S3": s3_proxy.url,
        "PYTHONUNBUFFERED": "1",
    }
    return env


def storage_calc(*args: str) -> list[str]:
    """The command line of a `storage-calc` process."""
    return [sys.executable, "-m", "storage_calc", *args]


@pytest.fixture
def spawn(process_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts `storage-calc ARGS` as a real process; every one is gone after the test."""
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            storage_calc(*args), env=process_env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def read_events(
    process: subprocess.Popen[str], until: Callable[[list[str]], bool], timeout: float = 30
) -> list[str]:
    """The events of the JSON lines `process` logs on stderr, read until `until(events)`. A
    process that has not logged them within `timeout` seconds is killed: the test fails instead
    of waiting for ever."""
    assert process.stderr is not None
    events: list[str] = []
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        for line in process.stderr:
            if line.startswith("{"):
                events.append(json.loads(line)["event"])
                if until(events):
                    return events
    finally:
        killer.cancel()
    raise AssertionError(
        f"the process ended, or was killed after {timeout} s, having logged {events}"
    )


_private_ports = itertools.count()


def private_port() -> int:
    """A free port for a process the test starts, below the kernel's ephemeral range (which
    starts at 32768 on Linux), so that no bind to port 0, of this test or another, can be given
    it before the process binds it; in a block of its own per xdist worker, so that two
    workers never pick the same one."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    for _ in range(1000):
        port = 20_000 + 1000 * (worker % 12) + next(_private_ports) % 1000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def billable_row(customer: int, space: int | None, **figures: object) -> Billable:
    """A row with every figure 0 but those given."""
    values: dict[str, object] = {
        "current_objects": 0, "current_bytes": 0, "billed_bytes": 0, "noncurrent_versions": 0,
        "noncurrent_bytes": 0, "delete_markers": 0, "incomplete_uploads": 0,
        "incomplete_upload_bytes": 0, "oldest_upload": None, "by_storage_class": {},
    }  # fmt: skip
    return Billable(customer, space, **(values | figures))  # type: ignore[arg-type]


# A versioned storage bucket with every kind of entry the bill counts, and an unversioned
# thumbnails bucket: customer 2's space 5 holds a key with a noncurrent version, a deleted key,
# an object in STANDARD_IA and an unfinished upload of two parts; `2/pdf/` is outside any space,
# `transient/` outside any customer and customer 3 is another customer.
FIRST_PART = 5 * 1024 * 1024
SECOND_PART = 1234


def put_versioned(client: Any, storage: str, thumbs: str) -> None:
    client.put_bucket_versioning(Bucket=storage, VersioningConfiguration={"Status": "Enabled"})
    for key, size, storage_class in [
        ("2/5/a", 100, "STANDARD"), ("2/5/a", 300, "STANDARD"), ("2/5/b", 50, "STANDARD"),
        ("2/5/ia", 10, "STANDARD_IA"), ("2/pdf/x", 7, "STANDARD"), ("transient/x", 3, "STANDARD"),
        ("3/1/c", 9, "STANDARD"),
    ]:  # fmt: skip
        client.put_object(Bucket=storage, Key=key, Body=b"\0" * size, StorageClass=storage_class)
    client.delete_object(Bucket=storage, Key="2/5/b")
    upload = client.create_multipart_upload(Bucket=storage, Key="2/5/big")["UploadId"]
    for number, size in ((1, FIRST_PART), (2, SECOND_PART)):
        client.upload_part(
            Bucket=storage, Key="2/5/big", UploadId=upload, PartNumber=number, Body=b"\0" * size
        )
    client.put_object(Bucket=thumbs, Key="2/5/a/open/100.jpg", Body=b"\0" * 5)


@pytest.fixture
def versioned(s3: S3Client) -> None:
    """`put_versioned` on moto's buckets."""
    put_versioned(s3, STORAGE, THUMBS)


@pytest.fixture
def two_customers(register: Callable[..., None], database_url: str) -> None:
    """Customers 2 (asset 2/5/a, 222 bytes) and 3 (asset 3/7/b, 333 bytes), written by the real
    write path."""
    register("2/5/a", "3/7/b")
    with db.connect(database_url) as conn:
        layout = db.detect_layout(conn)
        for customer, space, asset, size in ((2, 5, "a", 222), (3, 7, "b", 333)):
            rows = [(f"{customer}/{space}/{asset}", space, size, 0, 0)]
            write_customer(
                conn, layout, customer, Spaces(), None, rows, datetime.now(UTC), dry_run=False
            )


@pytest.fixture
def keyed_api(
    two_customers: None, conn: psycopg.Connection[Any], database_url: str
) -> Iterator[TestClient]:
    """`serve`'s application over `two_customers`, checking the keys of the platform's
    "Customers" table (tests/api_keys.py)."""
    add_customers_table(conn)
    keys = auth.CustomersTable(SALT)
    with TestClient(create_app(database_url, "https://api.dlcs.example", keys)) as client:
        yield client
