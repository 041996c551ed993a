"""`serve` authenticates as the platform's API does: HTTP Basic, realm DLCS-API, keys from the
platform's "Customers" table (secrets derived with its ApiSalt) or from a keys file, a
customer's key for its own paths, an administrator's for every path, nobody else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from storage_calc import auth
from storage_calc.api import create_app
from storage_calc.cli import cli
from storage_calc.errors import ConfigError
from tests.api_keys import SALT, add_customers_table, basic, platform

BASE = "https://api.dlcs.example"


def test_a_customer_path_without_credentials_is_401_with_the_challenge(
    keyed_api: TestClient,
) -> None:
    response = keyed_api.get("/customers/2/storage")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="DLCS-API"'
    assert "222" not in response.text


def test_a_customers_key_opens_its_own_paths(keyed_api: TestClient) -> None:
    for path in ("/customers/2/storage", "/customers/2/spaces/5/storage"):
        assert keyed_api.get(path, headers=platform("k2a", 2)).status_code == 200
    response = keyed_api.get("/customers/2/spaces/5/images/a/storage", headers=platform("k2b", 2))
    assert (response.status_code, response.json()["size"]) == (200, 222)


def test_a_customers_key_is_401_on_another_customers_path(keyed_api: TestClient) -> None:
    response = keyed_api.get("/customers/3/storage", headers=platform("k2a", 2))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="DLCS-API"'


def test_the_secret_of_a_key_under_another_customer_id_is_refused(keyed_api: TestClient) -> None:
    assert keyed_api.get("/customers/3/storage", headers=platform("k2a", 3)).status_code == 401


def test_an_unknown_customer_is_answered_as_a_forbidden_one(keyed_api: TestClient) -> None:
    unknown = keyed_api.get("/customers/99/storage", headers=platform("k2a", 2))
    forbidden = keyed_api.get("/customers/3/storage", headers=platform("k2a", 2))
    assert (unknown.status_code, unknown.content) == (forbidden.status_code, forbidden.content)
    assert unknown.headers == forbidden.headers


def test_an_admin_key_opens_every_customers_paths(keyed_api: TestClient) -> None:
    for path in ("/customers/2/storage", "/customers/3/spaces/7/images/b/storage"):
        assert keyed_api.get(path, headers=platform("kadmin", 1)).status_code == 200
    missing = keyed_api.get("/customers/99/storage", headers=platform("kadmin", 1))
    assert missing.status_code == 404


def test_a_path_of_no_customer_is_for_admins_only(keyed_api: TestClient) -> None:
    assert keyed_api.get("/customers/two/storage", headers=platform("k2a", 2)).status_code == 401
    assert keyed_api.get("/customers/two/storage", headers=platform("kadmin", 1)).status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": platform("k2a", 2)["Authorization"].replace("Basic", "basic")},
        {"Authorization": "Basic " + auth.platform_secret(SALT, 2, "k2a")},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Bearer k2a"},
        basic("k2a", auth.platform_secret(SALT, 2, "k2a").upper()),
        basic("k2a", "wrong"),
        basic("", auth.platform_secret(SALT, 2, "k2a")),
        basic("k2a", auth.platform_secret(SALT, 2, "k2a") + ":x"),
        basic("k2", auth.platform_secret(SALT, 2, "k2")),
        basic("k2a,k2b", auth.platform_secret(SALT, 2, "k2a,k2b")),
        basic("k2a", auth.platform_secret("", 2, "k2a")),
    ],
    ids=[
        "scheme-lowercase", "no-colon", "bad-base64", "bearer", "uppercase-hex", "wrong-secret",
        "empty-key", "two-colons", "part-of-a-key", "two-keys", "no-salt",
    ],
)  # fmt: skip
def test_a_malformed_or_wrong_credential_is_401(
    keyed_api: TestClient, headers: dict[str, str]
) -> None:
    response = keyed_api.get("/customers/2/storage", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="DLCS-API"'


@pytest.mark.parametrize("path", ["/storagePolicies/default", "/healthz", "/ping"])
def test_policies_and_health_checks_are_anonymous(keyed_api: TestClient, path: str) -> None:
    assert keyed_api.get(path).status_code == 200


def test_an_unknown_path_is_401_before_it_is_404(keyed_api: TestClient) -> None:
    assert keyed_api.get("/nowhere").status_code == 401
    assert keyed_api.get("/nowhere", headers=platform("kadmin", 1)).status_code == 404


def test_a_failed_attempt_is_logged_without_its_secret(keyed_api: TestClient) -> None:
    with capture_logs() as logs:
        keyed_api.get("/customers/3/storage", headers=basic("k2a", "the-wrong-secret"))
    (event,) = [e for e in logs if e["event"] == "api_unauthorized"]
    assert (event["key"], event["path"]) == ("k2a", "/customers/3/storage")
    assert "the-wrong-secret" not in repr(logs) and SALT not in repr(logs)


def test_a_key_made_for_the_keys_file_opens_its_customers_paths(
    two_customers: None, database_url: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, ["api-key", "2"])
    key, secret = result.stderr.split()[1:4:2]
    assert secret not in result.stdout
    keys = tmp_path / "keys"
    keys.write_text("# customer key sha256(secret) [admin]\n" + result.stdout)
    with TestClient(create_app(database_url, BASE, auth.read_keys_file(keys))) as client:
        assert client.get("/customers/2/storage", headers=basic(key, secret)).status_code == 200
        assert client.get("/customers/3/storage", headers=basic(key, secret)).status_code == 401
        assert client.get("/customers/2/storage", headers=basic(key, "x" * 64)).status_code == 401


def test_an_admin_line_of_the_keys_file_opens_every_path(tmp_path: Path) -> None:
    key, secret, line = auth.new_key(1, admin=True)
    keys = tmp_path / "keys"
    keys.write_text(line + "\n")
    store = auth.read_keys_file(keys)
    assert store.holder(key, secret, 3, lambda: pytest.fail("no database")) == 1
    assert store.holder(key, secret, None, lambda: pytest.fail("no database")) == 1


@pytest.mark.parametrize(
    "line",
    ["2 k2a", "two k2a " + "0" * 64, "2 k2a " + "A" * 64, "2 k2a " + "0" * 64 + " root",
     "2 k:2 " + "0" * 64, "-1 k2a " + "0" * 64],
)  # fmt: skip
def test_a_bad_line_of_the_keys_file_is_a_config_error_naming_it(tmp_path: Path, line: str) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# fine\n" + line + "\n")
    with pytest.raises(ConfigError, match=rf"{keys}:2: expected CUSTOMER KEY"):
        auth.read_keys_file(keys)


def test_the_keys_file_never_holds_a_secret(tmp_path: Path) -> None:
    key, secret, line = auth.new_key(2, admin=False)
    assert secret not in line and key in line
    assert secret not in repr(auth.read_keys_file(_write(tmp_path, line)))


def _write(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(line + "\n")
    return path


def no_table() -> bool:
    return False


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "api.example.org"])
def test_serve_refuses_a_public_address_without_keys(host: str) -> None:
    with pytest.raises(ConfigError, match="refusing to serve every customer's figures"):
        auth.choose(no_table, None, None, False, host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_serve_answers_everyone_on_loopback_without_keys(host: str) -> None:
    assert auth.choose(no_table, None, None, False, host) is None


def test_no_auth_serves_everyone_anywhere() -> None:
    assert auth.choose(no_table, None, None, True, "0.0.0.0") is None


def test_a_customers_table_needs_the_salt() -> None:
    with pytest.raises(ConfigError, match="give its ApiSalt"):
        auth.choose(lambda: True, None, None, False, "127.0.0.1")
    assert auth.choose(lambda: True, None, SALT, False, "0.0.0.0") == auth.CustomersTable(SALT)


def test_a_salt_without_a_customers_table_is_refused() -> None:
    with pytest.raises(ConfigError, match='no "Customers" table'):
        auth.choose(no_table, None, SALT, False, "0.0.0.0")


def test_the_salt_is_not_in_the_stores_repr() -> None:
    assert SALT not in repr(auth.CustomersTable(SALT))


def test_the_serve_command_refuses_a_public_address_in_one_line(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--database-url", database_url])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: refusing to serve every customer's figures on 0.0.0.0")
    assert result.stderr.count("\n") == 1


def test_the_serve_command_refuses_a_customers_table_without_the_salt(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    add_customers_table(conn)
    result = CliRunner().invoke(cli, ["serve", "--database-url", database_url])
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1)
    assert "STORAGE_CALC_API_SALT" in result.stderr
