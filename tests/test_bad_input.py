"""Every malformed option, setting or environment value ends in one `Error:` line and the
documented exit code (2 for bad usage or configuration), never in a traceback."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from storage_calc.cli import cli
from storage_calc.sources.listing import S3Client

Invoke = Callable[..., Result]

# (arguments, environment) -> what the one line must say
MALFORMED: list[tuple[tuple[str, ...], dict[str, str], str]] = [
    (("run", "--customer", "x"), {}, "'x' is not a valid integer range"),
    (("run", "--customer", "-1"), {}, "-1 is not in the range"),
    (("run", "--customer", "2", "--space", "five"), {}, "'five' is not a valid integer range"),
    (("run", "--space", "5"), {}, "--space needs --customer"),
    (("run", "--asset", "2/5"), {}, "'2/5' is not an asset id"),
    (("run", "--asset", "2/5/a", "--customer", "2"), {}, "--asset cannot be combined"),
    (("run", "--shard", "4/4"), {}, "shard '4/4' is out of range"),
    (("run", "--shard", "half"), {}, "'half' is not a shard"),
    (("run", "--shards", "0"), {}, "0 is not in the range"),
    (("run", "--shards", "4"), {}, "--shards needs JOB_COMPLETION_INDEX"),
    (("run", "--shards", "4"), {"JOB_COMPLETION_INDEX": "x"}, "'x/4' is not a shard"),
    (("run", "--workers", "0"), {}, "0 is not in the range"),
    (("run", "--workers", "many"), {}, "'many' is not a valid integer range"),
    (("run", "--storage-bucket", "Not_A_Bucket"), {}, "is not a valid S3 bucket name"),
    (("run", "--thumbs-bucket", "thumbs//x/"), {}, "has an empty segment in its prefix"),
    (("run", "--pushgateway", "ftp://x"), {}, "'ftp://x' is not an http(s) URL"),
    (("run", "--quota-margin", "150"), {}, "'150' is not a percentage"),
    (("run", "--database-url", "not a url"), {}, "the database URL is malformed"),
    (("run", "--no-such-option"), {}, "No such option '--no-such-option'"),
    (("no-such-command",), {}, "No such command 'no-such-command'"),
    (("show", "customer", "x"), {}, "'x' is not a valid integer range"),
    (("show", "asset", "2/x"), {}, "'2/x' is not an asset id"),
    (("show", "customer", "2", "--api-base-url", "nope"), {}, "'nope' is not an http(s) URL"),
    (("report", "drift", "--since", "yesterday"), {}, "'yesterday' is not an age"),
    (("runs", "--limit", "0"), {}, "0 is not in the range"),
    (("db", "prune", "--older-than", "forever"), {}, "'forever' is not an age"),
    (("db", "migrate", "--platform-schema", "newest"), {}, "'newest' is not one of"),
    (("schedule", "--cron", "61 * * * *"), {}, "61 * * * *"),
    (("schedule", "--timezone", "Mars/Olympus"), {}, "Mars/Olympus"),
    (("schedule", "--metrics-port", "0"), {}, "0 is not in the range"),
    (("serve", "--port", "99999"), {}, "99999 is not in the range"),
    (("run",), {"STORAGE_CALC_WORKERS": "lots"}, "'lots' is not a valid integer range"),
    (("run",), {"STORAGE_CALC_STORAGE_BUCKET": "UPPER"}, "is not a valid S3 bucket name"),
    (("run",), {"STORAGE_CALC_QUOTA_MARGIN": "abc"}, "'abc' is not a percentage"),
    (("show", "policy", "default"), {"STORAGE_CALC_API_BASE_URL": "x"}, "is not an http(s) URL"),
    (("run",), {"AWS_MAX_ATTEMPTS": "lots"}, "max_attempts (AWS_MAX_ATTEMPTS) is not a whole"),
    (("run",), {"AWS_ENDPOINT_URL_S3": "not a url"}, "Invalid endpoint: not a url"),
    (("run",), {"AWS_RETRY_MODE": "bogus"}, "must be one of"),
    (("run",), {"AWS_DEFAULT_REGION": "a b"}, "doesn't match a supported format"),
]


@pytest.fixture
def invoke_real_client(database_url: str, s3: S3Client, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """The CLI in-process against the test database, making its own S3 client from boto3's
    chain (inside moto), so that malformed AWS settings reach it."""
    monkeypatch.setenv("STORAGE_CALC_DATABASE_URL", database_url)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)

    def invoke(args: tuple[str, ...], env: dict[str, str]) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(cli, list(args))

    return invoke


@pytest.mark.parametrize(
    ("args", "env", "says"), MALFORMED, ids=[" ".join((*a, *e.values())) for a, e, _ in MALFORMED]
)
def test_a_malformed_value_is_one_error_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], says: str, invoke_real_client: Invoke
) -> None:
    result = invoke_real_client(args, env)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unreachable_database_is_one_error_line_and_exit_1(
    invoke_real_client: Invoke,
) -> None:
    result = invoke_real_client(("show", "customer", "2", "--database-url", "host=/nowhere"), {})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot connect to the database: ")
    assert result.stderr.count("\n") == 1


def test_an_unexpected_failure_is_one_error_line_and_exit_1(
    invoke_real_client: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("something no check foresaw")

    monkeypatch.setattr("storage_calc.resources.customer_storage", broken)
    result = invoke_real_client(("show", "customer", "2"), {})
    assert result.exit_code == 1
    assert result.stderr == "Error: unexpected RuntimeError: something no check foresaw\n"
