"""`storage-calc serve`: every route and status through Starlette's test client, and the real
server process fetched with an ordinary HTTP client."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from storage_calc import db
from storage_calc.api import create_app
from storage_calc.cli import cli
from storage_calc.model import Spaces
from tests.conftest import private_port, storage_calc
from tests.databases import write_customer

BASE = "https://api.dlcs.example"


@pytest.fixture
def figures(register: Callable[..., None], database_url: str) -> None:
    """Customer 2: `my asset+1%` in space 5, `é` in space 6, written by the real write path."""
    register("2/5/my asset+1%", "2/6/é")
    rows = [("2/5/my asset+1%", 5, 4082121, 115874, 0), ("2/6/é", 6, 10, 1, 0)]
    with db.connect(database_url) as conn:
        layout = db.detect_layout(conn)
        write_customer(conn, layout, 2, Spaces(), None, rows, datetime.now(UTC), dry_run=False)


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, BASE, None)) as test_client:
        yield test_client


def show(database_url: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["show", *args, "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("/customers/2/storage", ["customer", "2"]),
        ("/customers/2/spaces/5/storage", ["customer", "2", "--space", "5"]),
        ("/customers/2/spaces/5/images/my%20asset%2B1%25/storage", ["asset", "2/5/my asset+1%"]),
        ("/customers/2/spaces/5/images/my%20asset+1%25/storage", ["asset", "2/5/my asset+1%"]),
        ("/customers/2/spaces/6/images/%C3%A9/storage", ["asset", "2/6/é"]),
        ("/storagePolicies/default", ["policy", "default"]),
    ],
)
def test_each_resource_is_what_show_prints(
    figures: None, client: TestClient, database_url: str, path: str, args: list[str]
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ld+json"
    assert response.text == json.dumps(show(database_url, *args), indent=2, ensure_ascii=False)


def test_plain_json_when_the_client_asks_for_it(figures: None, client: TestClient) -> None:
    response = client.get("/customers/2/storage", headers={"Accept": "application/json"})
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path",
    [
        "/customers/3/storage",
        "/customers/2/spaces/9/storage",
        "/customers/2/spaces/5/images/nope/storage",
        "/storagePolicies/gold",
        "/customers/2/spaces/5/images/a%2Fb/storage",
        "/nowhere",
    ],
)
def test_unknown_is_404_with_a_json_body(figures: None, client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["status"] == 404


@pytest.mark.parametrize("path", ["/customers/two/storage", "/customers/2/spaces/-1/storage"])
def test_a_non_integer_customer_or_space_is_400(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert (response.status_code, response.json()["status"]) == (400, 400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(figures: None, client: TestClient, method: str) -> None:
    assert client.request(method, "/customers/2/storage").status_code == 405


def test_a_current_copy_is_answered_304(figures: None, client: TestClient) -> None:
    first = client.get("/customers/2/spaces/5/storage")
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get(
        "/customers/2/spaces/5/storage", headers={"If-None-Match": first.headers["etag"]}
    )
    assert (again.status_code, again.content) == (304, b"")
    since = client.get(
        "/customers/2/spaces/5/storage",
        headers={"If-Modified-Since": first.headers["last-modified"]},
    )
    assert since.status_code == 304


def test_changed_figures_change_the_etag(
    figures: None, client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    etag = client.get("/customers/2/storage").headers["etag"]
    conn.execute('UPDATE "CustomerStorage" SET "TotalSizeOfStoredImages" = 1 WHERE "Space" = 0')
    response = client.get("/customers/2/storage", headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.headers["etag"] != etag


def test_healthz_checks_the_database(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_healthz_reports_an_unreachable_database() -> None:
    unreachable = create_app("postgresql://nobody@127.0.0.1:1/none", BASE, None, 0.5)
    with TestClient(unreachable) as client:
        response = client.get("/healthz")
    assert response.status_code == 503


def test_the_server_never_writes(
    figures: None, client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    before = conn.execute('SELECT * FROM "CustomerStorage" ORDER BY 1, 2').fetchall()
    for path in ("/customers/2/storage", "/customers/2/spaces/6/images/%C3%A9/storage"):
        client.get(path)
    assert conn.execute('SELECT * FROM "CustomerStorage" ORDER BY 1, 2').fetchall() == before


def test_the_real_server_serves_what_show_prints(
    figures: None, database_url: str, process_env: dict[str, str]
) -> None:
    port = private_port()
    server = subprocess.Popen(
        storage_calc("serve", "--port", str(port)), env=process_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz")
        for path, args in [
            ("/customers/2/storage", ["customer", "2"]),
            ("/customers/2/spaces/6/storage", ["customer", "2", "--space", "6"]),
            ("/customers/2/spaces/6/images/%C3%A9/storage", ["asset", "2/6/é"]),
            ("/storagePolicies/default", ["policy", "default"]),
        ]:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                assert json.loads(response.read()) == show(database_url, *args)
    finally:
        server.terminate()
        server.communicate(timeout=10)


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")
