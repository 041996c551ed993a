"""Hostile HTTP input to `serve`: random paths (percent-encodings invalid, overlong, `%2F`,
`..`), methods, header sizes and credentials, sent to the application exactly as uvicorn
hands them over. Never a 500, never a traceback, never a figure the credential may not see.
The real server's limit on the request's head is checked on the real process."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from storage_calc import auth
from storage_calc.api import MAX_HEADER_BYTES
from tests.api_keys import SALT, basic, platform
from tests.conftest import private_port, storage_calc

SEGMENTS = [
    "customers", "2", "3", "99", "02", "-1", "4294967296", "spaces", "5", "7", "images", "a",
    "b", "storage", "storagePolicies", "default", "ping", "healthz", "", ".", "..", "%2E%2E",
    "%2F", "%2f", "%00", "%FF", "%C0%AE", "%C0%AF", "%E0%80%AF", "%", "%2", "%zz", "%25",
    "+", "%20", "3%2Fspaces%2F7", "..%2F3",
]  # fmt: skip
CREDENTIALS = {
    "none": {},
    "customer 2": platform("k2a", 2),
    "admin": platform("kadmin", 1),
    "customer 3's key, 2's secret": platform("k3", 2),
    "wrong": basic("k2a", "0" * 64),
    "malformed": {"authorization": "Basic %%%"},
}
RESOURCES = [
    "/customers/2/storage", "/customers/2/spaces/5/storage",
    "/customers/2/spaces/5/images/a/storage", "/customers/3/storage",
    "/customers/3/spaces/7/storage", "/customers/3/spaces/7/images/b/storage",
]  # fmt: skip
segment = st.one_of(
    st.sampled_from(SEGMENTS), st.text(max_size=12).map(lambda t: t.replace("/", ""))
)
paths = st.one_of(
    st.lists(segment, min_size=1, max_size=8).map(lambda parts: "/" + "/".join(parts)),
    st.builds(
        lambda customer, tail: f"/customers/{customer}/" + "/".join(tail),
        st.sampled_from(["2", "3", "99", "02", "%32", "2%2F..%2F3", "..", "%33"]),
        st.lists(st.sampled_from(SEGMENTS), max_size=6),
    ),
    st.builds(
        lambda resource, mangle: mangle(resource),
        st.sampled_from(RESOURCES),
        st.sampled_from(
            [
                lambda r: r,
                lambda r: r + "/",
                lambda r: r.replace("/2/", "/2/../3/"),
                lambda r: r.replace("/", "%2F", 2),
                lambda r: r.replace("2", "%32"),
                lambda r: r.replace("/customers/3", "/customers/2/../3"),
                lambda r: "/" + r,
            ]
        ),
    ),
)
methods = st.one_of(
    st.just("GET"), st.sampled_from(["HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "BREW"])
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=MAX_HEADER_BYTES // 2
)


def raw(path: str) -> bytes:
    """The request target as a client may send it: text beyond ASCII percent-encoded."""
    return "".join(
        c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode()) for c in path
    ).encode()


def call(app: Any, method: str, target: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request through the ASGI application, with the scope uvicorn builds (its path is
    the target percent-decoded, as uvicorn decodes it)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": unquote(target.decode("ascii")), "raw_path": target,
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(path="/customers/2/../3/storage", method="GET", who="customer 2", extra="")
@example(path="/customers/2%2F..%2F3/storage", method="GET", who="customer 2", extra="")
@example(path="/customers/%33/storage", method="GET", who="customer 2", extra="")
@example(path="/customers/2/spaces/5/images/a/storage", method="GET", who="customer 2", extra="")
@example(path="/customers/3/spaces/7/images/b/storage", method="GET", who="admin", extra="")
@given(
    path=paths,
    method=methods,
    who=st.sampled_from(list(CREDENTIALS)),
    extra=header_values,
)
def test_hostile_requests_never_fail_or_leak(
    keyed_api: TestClient, path: str, method: str, who: str, extra: str
) -> None:
    headers = {"x-padding": extra, **CREDENTIALS[who]}
    status, body = call(keyed_api.app, method, raw(path), headers)
    assert status in {200, 307, 400, 401, 404, 405, 431}, (status, body)
    event(f"{status} to {who}")
    document = json.loads(body) if body else {}  # every answer with a body is JSON
    if status != 200:
        assert set(document) <= {"error", "status"}
    elif document.get("@type") not in ("StoragePolicy", None):
        # A figure: customer 2's to customer 2's key, any to the administrator's.
        assert who == "admin" or (who == "customer 2" and "/customers/2/" in document["@id"])
    else:
        assert document in ({"status": "ok"}, {}) or document["@type"] == "StoragePolicy"


@given(key=st.text(max_size=40), secret=st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_random_credentials_open_nothing(key: str, secret: str) -> None:
    keys = auth.KeysFile((auth.KeyEntry(2, "k2a", auth.secret_digest("s" * 64)),))
    assert keys.holder(key, secret, 2, lambda: pytest.fail("no database")) is None
    header = basic(key, secret)["Authorization"]
    found = auth.basic_credentials(header)
    assert found is None or found == (key, secret)


def head_of(size: int) -> bytes:
    return (
        b"GET /storagePolicies/default HTTP/1.1\r\nHost: x\r\nX-Padding: "
        + b"a" * size
        + b"\r\nConnection: close\r\n\r\n"
    )


def status_of(port: int, request: bytes) -> bytes:
    """The status line of the answer; empty when the server closed the connection first."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(request)
            while chunk := conn.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return answer.split(b"\r\n", 1)[0]


def test_a_head_beyond_the_limit_is_431(keyed_api: TestClient) -> None:
    padding = "a" * (MAX_HEADER_BYTES - len("/storagePolicies/default") - len("x-padding"))
    assert call(keyed_api.app, "GET", b"/storagePolicies/default", {"x-padding": padding})[0] == 200
    status, body = call(
        keyed_api.app, "GET", b"/storagePolicies/default", {"x-padding": padding + "a"}
    )
    assert (status, json.loads(body)["status"]) == (431, 431)


def test_the_real_server_refuses_a_head_beyond_its_limit(
    keyed_api: TestClient, database_url: str, process_env: dict[str, str]
) -> None:
    port = private_port()
    env = process_env | {"STORAGE_CALC_API_SALT": SALT}
    server = subprocess.Popen(
        storage_calc("serve", "--port", str(port), "--database-url", database_url),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        assert status_of(port, head_of(MAX_HEADER_BYTES // 2)) == b"HTTP/1.1 200 OK"
        assert status_of(port, head_of(MAX_HEADER_BYTES)).startswith(b"HTTP/1.1 431")
        assert status_of(port, head_of(1 << 20)) in (b"", b"HTTP/1.1 400 Bad Request")
        assert status_of(port, head_of(10)) == b"HTTP/1.1 200 OK"
    finally:
        server.terminate()
        server.communicate(timeout=10)
