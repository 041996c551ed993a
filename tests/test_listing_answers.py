"""Answers with status 200 that are not a listing of what was asked (empty, an HTML page from a
proxy, other XML, another bucket or prefix, a size that is not a number) are errors: retried
like a 500, then failing only their customer, never taken for the end of a listing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any
from xml.sax.saxutils import escape

import psycopg
import pytest
from botocore.awsrequest import AWSResponse

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import Outcome
from storage_calc.sources.listing import InvalidListing, S3Client, make_s3_client, parse_listing
from tests.conftest import STORAGE, RawBody
from tests.s3_proxy import S3Proxy

Conn = psycopg.Connection[Any]
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def listing(
    name: str = STORAGE, prefix: str = "2/5/", size: str = "1", truncated: str | None = "false"
) -> bytes:
    flag = "" if truncated is None else f"<IsTruncated>{truncated}</IsTruncated>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {NS}><Name>{name}</Name>'
        f"<Prefix>{prefix}</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>{flag}"
        f"<Contents><Key>2/5/a</Key><Size>{size}</Size></Contents></ListBucketResult>"
    ).encode()


ANSWERS = {
    "empty": b"",
    "cut short": listing()[:150],
    "html": b"<!DOCTYPE html><html><body><p>502 Bad Gateway<br></body></html>",
    "xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><body>Bad Gateway</body></html>',
    "other xml": f"<ListAllMyBucketsResult {NS}><Buckets/></ListAllMyBucketsResult>".encode(),
    "other bucket": listing(name="dlcs-thumbs"),
    "other prefix": listing(prefix="2/6/"),
    "size not a number": listing(size="12kB"),
    "no IsTruncated": listing(truncated=None),
}


@pytest.fixture
def s3_two_attempts(s3: S3Client, monkeypatch: pytest.MonkeyPatch) -> S3Client:
    """A client of the same moto S3 that gives up after two attempts, so that a fault on every
    attempt fails in well under a second."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return make_s3_client(max_connections=4)


@pytest.fixture
def answer_listing() -> Iterator[Callable[..., list[int]]]:
    """answer_listing(client, marker, body, times): list requests whose URL contains `marker`
    get `body` with status 200 instead of S3's answer, `times` times (every time if None).
    Returns a list that grows by one for every request answered so."""
    registered: list[tuple[S3Client, Any]] = []

    def answer_listing(
        client: S3Client, marker: str, body: bytes, times: int | None = None
    ) -> list[int]:
        answered: list[int] = []

        def answer(request: Any, **_: Any) -> AWSResponse | None:
            if marker in request.url and (times is None or len(answered) < times):
                answered.append(1)
                return AWSResponse(request.url, 200, {}, RawBody(body))
            return None

        client.meta.events.register("before-send.s3.ListObjectsV2", answer)
        registered.append((client, answer))
        return answered

    yield answer_listing
    for client, answer in registered:
        client.meta.events.unregister("before-send.s3.ListObjectsV2", answer)


@pytest.fixture
def two_customers(register: Callable[..., None], put: Callable[..., None]) -> None:
    register("2/5/a", "2/5/b", "3/1/c")
    put(STORAGE, {"2/5/a": 100, "2/5/b": 200, "3/1/c": 300})


def figures(conn: Conn) -> dict[tuple[int, int], tuple[int, int]]:
    rows = conn.execute(
        'SELECT "Customer", "Space", "NumberOfStoredImages", "TotalSizeOfStoredImages"'
        ' FROM "CustomerStorage"'
    )
    return {(c, s): (n, size) for c, s, n, size in rows}


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_that_is_not_the_listing_asked_for_is_retried_to_exact_figures(
    body: bytes, two_customers: None, settings: Settings, s3: S3Client, conn: Conn,
    answer_listing: Callable[..., list[int]],
) -> None:  # fmt: skip
    answered = answer_listing(s3, "prefix=2%2F5%2F", body, times=1)
    report = calculator.run(settings, s3)
    assert report.outcome == "done"
    assert answered == [1]
    assert figures(conn) == {(2, 0): (2, 300), (2, 5): (2, 300), (3, 0): (1, 300), (3, 1): (1, 300)}


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_that_is_never_the_listing_asked_for_fails_only_its_customer(
    body: bytes, two_customers: None, settings: Settings, s3_two_attempts: S3Client, conn: Conn,
    answer_listing: Callable[..., list[int]],
) -> None:  # fmt: skip
    calculator.run(settings, s3_two_attempts)
    before = figures(conn)
    s3_two_attempts.put_object(Bucket=STORAGE, Key="2/5/a/more", Body=b"\0" * 5)
    answered = answer_listing(s3_two_attempts, "prefix=2%2F5%2F", body)
    report = calculator.run(settings, s3_two_attempts)
    failed, done = report.customers
    assert (failed.customer, failed.outcome, done.customer, done.outcome) == (
        2, Outcome.FAILED, 3, Outcome.DONE,
    )  # fmt: skip
    assert "listing s3://dlcs-storage/2/5/ failed after retries: InvalidListing the answer" in (
        failed.error or ""
    )
    assert len(answered) == 2
    assert figures(conn) == before
    flags = conn.execute('SELECT DISTINCT "CheckingInProgress" FROM "ImageStorage"').fetchall()
    assert flags == [(False,)]


@pytest.mark.parametrize("body", ANSWERS.values(), ids=ANSWERS.keys())
def test_the_command_names_the_customer_whose_listing_was_never_a_listing_and_exits_1(
    body: bytes, register: Callable[..., None], server_put: Callable[..., None],
    s3_proxy: S3Proxy, process_env: dict[str, str], spawn: Callable[..., subprocess.Popen[str]],
) -> None:  # fmt: skip
    """The real command, on moto's server, with the answers sent on the wire by the proxy."""
    process_env["AWS_MAX_ATTEMPTS"] = "2"
    register("2/5/a", "3/1/c")
    server_put(STORAGE, {"2/5/a": 100, "3/1/c": 300})
    s3_proxy.answer("prefix=2%2F5%2F", body)
    process = spawn("run")
    _, stderr = process.communicate(timeout=60)
    errors = [line for line in stderr.splitlines() if not line.startswith("{")]
    assert process.returncode == 1
    assert errors[0].startswith(
        "Error: customer 2: listing s3://dlcs-storage/2/5/ failed after retries: InvalidListing "
    )
    assert errors[1:] == ["Error: 1 of 2 customers failed"]


def encoded_listing(echoed: str) -> bytes:
    """A listing asked with `EncodingType=url` whose `<Prefix>` is `echoed`, as written."""
    return listing(prefix=echoed).replace(
        b"</ListBucketResult>", b"<EncodingType>url</EncodingType></ListBucketResult>"
    )


ECHOES = {
    "encoded, as AWS and moto send it": ("+30/", "%2B30/"),
    "as sent, as SeaweedFS sends it": ("+30/", "+30/"),
    "a percent sign encoded": ("%2B7/", "%252B7/"),
    "a percent sign as sent": ("%2B7/", "%2B7/"),
    "a space encoded as +": ("a b/", "a+b/"),
    "not in XML encoded": ("a\x01b/", "a%01b/"),
    "not in XML as sent, replaced by U+FFFD": ("a\x01b/", "a\ufffdb/"),
}


@pytest.mark.parametrize(("prefix", "echoed"), ECHOES.values(), ids=ECHOES.keys())
def test_each_servers_spelling_of_the_requested_prefix_is_a_listing_of_it(
    prefix: str, echoed: str
) -> None:
    parsed = parse_listing(encoded_listing(escape(echoed)), (STORAGE, prefix))
    assert parsed is not None


WRONG_ECHOES = {
    "another prefix encoded": ("+30/", "%2B31/"),
    "another prefix as sent": ("+30/", "+31/"),
    "a space for a plus": ("+30/", "%2030/"),
    "U+FFFD for a character XML carries": ("a b/", "a\ufffdb/"),
}


@pytest.mark.parametrize(("prefix", "echoed"), WRONG_ECHOES.values(), ids=WRONG_ECHOES.keys())
def test_a_listing_of_another_prefix_is_refused_in_either_spelling(
    prefix: str, echoed: str
) -> None:
    with pytest.raises(InvalidListing, match="the answer listed s3://dlcs-storage/"):
        parse_listing(encoded_listing(escape(echoed)), (STORAGE, prefix))
