"""No secret leaves the process: database passwords (in the URL, in PGPASSWORD, in a service
file), AWS secret keys, the API salt and API secrets appear in nothing a command prints or
writes, whether its connections fail or succeed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from storage_calc import logs
from storage_calc.cli import cli
from tests.conftest import STORAGE, THUMBS

SECRETS = {
    "url": "url-password-31415",
    "pgpassword": "pgpassword-92653",
    "service": "service-password-58979",
    "aws": "aws-secret-32384",
    "salt": "api-salt-62643",
    "push": "push-password-38327",
}
UNREACHABLE = f"postgresql://calc:{SECRETS['url']}@127.0.0.1:1/platform?connect_timeout=2"
PUSHGATEWAY = f"http://metrics:{SECRETS['push']}@127.0.0.1:1"
COMMANDS = [
    ["run"],
    ["run", "--dry-run"],
    ["run", "--asset", "2/5/a"],
    ["run", "--billable"],
    ["run", "--pushgateway", PUSHGATEWAY],
    ["db", "status"],
    ["db", "migrate"],
    ["db", "grants"],
    ["db", "prune", "--older-than", "90d"],
    ["show", "customer", "2"],
    ["runs"],
    ["report", "usage"],
    ["serve", "--host", "0.0.0.0"],
    ["serve", "--port", "1", "--keys-file", "/nonexistent/keys"],
]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_env: None) -> None:
    service_file = tmp_path / "pg_service.conf"
    service_file.write_text(
        f"[platform]\nhost=127.0.0.1\nport=1\nuser=calc\npassword={SECRETS['service']}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    monkeypatch.setenv("PGPASSWORD", SECRETS["pgpassword"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["aws"])
    monkeypatch.setenv("STORAGE_CALC_API_SALT", SECRETS["salt"])


def leaked(*texts: str) -> list[str]:
    return [name for name, secret in SECRETS.items() for text in texts if secret in text]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("url", [UNREACHABLE, "service=platform connect_timeout=2"])
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_failing_database_connection_prints_no_secret(
    secret_env: None, url: str, args: list[str]
) -> None:
    result = invoke(*args, "--database-url", url)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ")
    assert leaked(result.stdout, result.stderr) == []


@pytest.mark.parametrize(
    "url",
    [
        f"postgres:/calc:{SECRETS['url']}@db/platform",
        f"calc:{SECRETS['url']}@db/platform",
        f"postgresql://calc:{SECRETS['url']}@db/platform?sslmode={SECRETS['url']}",
        f"host=db password={SECRETS['url']} port={SECRETS['url']}",
    ],
)
def test_a_malformed_database_url_is_reported_without_its_password(url: str) -> None:
    result = invoke("db", "status", "--database-url", url)
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert leaked(result.stderr) == []


@pytest.fixture
def sample(register: Callable[..., None], put: Callable[..., None]) -> None:
    register("2/5/a", "2/6/b")
    put(STORAGE, {"2/5/a": 100, "2/6/b": 200, "2/5/orphan": 3})
    put(THUMBS, {"2/5/a/open/100.jpg": 5})


def with_password(database_url: str) -> str:
    """The test database's URL with a password the (trusting) server ignores."""
    return make_conninfo(database_url, password=SECRETS["url"])


@pytest.mark.parametrize("args", COMMANDS[:-2], ids=[" ".join(c[:2]) for c in COMMANDS[:-2]])
def test_a_working_database_and_failing_s3_store_and_print_no_secret(
    sample: None,
    secret_env: None,
    fail_listing: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
    database_url: str,
    conn: psycopg.Connection[Any],
    args: list[str],
) -> None:
    monkeypatch.setattr("storage_calc.cli.compute.make_s3_client", lambda workers: s3)
    fail_listing("prefix=2%2F5")
    result = invoke(*args, "--database-url", with_password(database_url))
    assert leaked(result.stdout, result.stderr) == []
    stored = [
        repr(row)
        for table in ("runs", "customer_runs", "changes", "orphans", "billable_storage")
        for row in conn.execute(f"SELECT * FROM storage_calc.{table}").fetchall()
    ]
    stored += [repr(conn.execute('SELECT * FROM "CustomerStorage"').fetchall())]
    assert leaked(*stored) == []


def test_the_failing_run_records_its_error(
    sample: None,
    secret_env: None,
    fail_listing: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """What the search above looks through holds the errors a secret could be part of."""
    monkeypatch.setattr("storage_calc.cli.compute.make_s3_client", lambda workers: s3)
    fail_listing("prefix=2%2F5")
    result = invoke(
        "run", "--pushgateway", PUSHGATEWAY, "--database-url", with_password(database_url)
    )
    assert result.exit_code == 1
    assert "metrics_push_failed" in result.stderr and "127.0.0.1:1" in result.stderr
    errors = conn.execute("SELECT error FROM storage_calc.customer_runs WHERE error IS NOT NULL")
    assert "access denied" in repr(errors.fetchall())


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("http://metrics:pw@gw:9091/x", "http://metrics:***@gw:9091/x"),
        ("postgresql://calc:p%40ss@db/platform", "postgresql://calc:***@db/platform"),
        ("see s3://bucket/key: fine", "see s3://bucket/key: fine"),
        ("http://gw:9091", "http://gw:9091"),
    ],
)
def test_log_lines_lose_the_passwords_of_urls(text: str, redacted: str) -> None:
    assert logs.without_url_passwords(text) == redacted
