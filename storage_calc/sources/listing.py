"""S3 listings: the one place that makes a boto3 client and walks ListObjectsV2 pages."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import botocore.handlers
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from storage_calc.errors import ConfigError, ListingError

S3Client = Any  # botocore clients are generated at run time; there is no importable class.

# Unless the operator chose otherwise (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS or the config file),
# retry in the standard mode with 10 attempts: botocore's legacy mode and the standard mode's
# 3 attempts give up too soon for a listing of millions of keys during a throttling storm.
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 10


# Where `read_listing` leaves its page in botocore's parsed response.
PAGE = "StorageCalcPage"

# The bucket and prefix the calling thread is listing. botocore hands its before-parse handlers
# the response but not the request, and calls them on the thread that made the call (retries
# included), so this is how `read_listing` knows what a valid answer must be a listing of.
_requested = threading.local()


class InvalidListing(ValueError):
    """A response with status 200 that is not a well-formed listing of what was asked."""


@dataclass(frozen=True)
class Page:
    """One ListObjectsV2 response: (key, size) pairs and, with a delimiter, common prefixes."""

    objects: list[tuple[str, int]]
    prefixes: list[str]


def make_s3_client(max_connections: int) -> S3Client:
    """An S3 client from boto3's own configuration chain (AWS_ENDPOINT_URL_S3, AWS_PROFILE, ...).

    It is made by botocore, the engine under boto3, with the same chain: boto3's resource
    layer and transfer manager would only add to every start-up.

    Its ListObjectsV2 responses are read by `read_listing`: botocore still signs, retries and
    reports errors, but never builds a dictionary with a parsed datetime for every listed key,
    which is most of its work per key and which the job never reads. A configuration botocore
    refuses (a malformed endpoint URL, retry setting or region) is a ConfigError.
    """
    session = botocore.session.Session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    try:
        config = Config(
            retries=retry_config(session),
            max_pool_connections=max_connections,
            connect_timeout=10,
            read_timeout=60,
        )
        client = session.create_client("s3", config=config)
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(f"the AWS configuration is unusable: {exc}") from exc
    read_listings_first(client.meta.events)
    return client


def retry_config(session: botocore.session.Session) -> dict[str, Any]:
    """The operator's retry mode and attempts where set, the job's defaults otherwise."""
    mode = os.environ.get("AWS_RETRY_MODE") or session.get_scoped_config().get("retry_mode")
    try:
        attempts = session.get_config_variable("max_attempts")
    except ValueError as exc:
        raise ConfigError(
            f"the AWS configuration is unusable: max_attempts (AWS_MAX_ATTEMPTS) is not a whole "
            f"number: {exc}"
        ) from exc
    return {
        "mode": mode or DEFAULT_RETRY_MODE,
        "total_max_attempts": int(attempts or DEFAULT_MAX_ATTEMPTS),
    }


def read_listings_first(events: Any) -> None:
    """Registers `read_listing` ahead of botocore's check for errors sent with status 200.

    That check parses every S3 response body in full; run after `read_listing` it reads the
    short body left behind instead, and it still turns an `<Error>` or a truncated body into a
    retried 500. Handlers of `s3.*` run before those of `s3.ListObjectsV2`, so the check is
    taken out and put back behind `read_listing`; if botocore ever renames it, it stays where
    it is and only costs a second parse.
    """
    check = getattr(botocore.handlers, "_handle_200_error", None)
    if check is not None:
        events.unregister("before-parse.s3.*", check)
    events.register_first("before-parse.s3.*", read_listing)
    if check is not None:
        events.register_first("before-parse.s3.*", check)


def read_listing(
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    operation_model: Any,
    **_: Any,
) -> None:
    """Reads the keys and sizes of a successful ListObjectsV2 response into a `Page`.

    What botocore is left to parse is only what drives the listing: `IsTruncated` and
    `NextContinuationToken`. Keys arrive URL-encoded because botocore asks for
    `EncodingType=url` (the job never sets it itself), so they are decoded here, exactly once,
    the way botocore would (`unquote_plus`). An error status and an `<Error>` sent with 200 are
    left as they came, for botocore to report or retry as usual. Any other answer with status
    200 that is not a well-formed listing of the requested bucket and prefix (an empty body, a
    body cut short, an HTML page, other XML, a size that is not a number) becomes a 500 with an
    `InvalidListing` error saying what was wrong, which botocore retries like any 500: taken for
    a last, empty page, it would have written a customer from part of its listing.
    """
    if operation_model.name != "ListObjectsV2" or response_dict["status_code"] != 200:
        return
    try:
        parsed = parse_listing(response_dict["body"], getattr(_requested, "listing", None))
    except InvalidListing as exc:
        response_dict["status_code"] = 500
        response_dict["body"] = (
            f"<Error><Code>InvalidListing</Code><Message>{escape(str(exc))}</Message></Error>"
        ).encode()
        return
    if parsed is not None:
        customized_response_dict[PAGE], response_dict["body"] = parsed


def parse_listing(body: bytes, requested: tuple[str, str] | None) -> tuple[Page, bytes] | None:
    """The page of a ListBucketResult and the short body left for botocore to parse, or None
    for an S3 error document; an InvalidListing saying why if the body is not a well-formed
    listing of `requested` (bucket, prefix)."""
    if not body.strip():
        raise InvalidListing("the answer was empty")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        start = " ".join(body[:60].decode("utf-8", "replace").split())
        raise InvalidListing(f"the answer is not well-formed XML: {start!r}") from exc
    if root.tag == "Error":
        return None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != f"{ns}ListBucketResult":
        raise InvalidListing(f"the answer was a {root.tag.removeprefix(ns)!r}, not a listing")
    decode = unquote_plus if root.findtext(f"{ns}EncodingType") == "url" else str
    if requested is not None:
        name, echoed = root.findtext(f"{ns}Name") or "", root.findtext(f"{ns}Prefix") or ""
        if name != requested[0] or not echoes(echoed, requested[1], decode):
            raise InvalidListing(
                f"the answer listed s3://{name}/{echoed}, not s3://{'/'.join(requested)}"
            )
    truncated = root.findtext(f"{ns}IsTruncated")
    if truncated not in ("true", "false"):
        raise InvalidListing(f"the answer's IsTruncated is {truncated!r}, not true or false")
    key_tag, size_tag = f"{ns}Key", f"{ns}Size"
    objects = []
    for contents in root.iterfind(f"{ns}Contents"):
        key = size = None
        for field in contents:
            if field.tag == key_tag:
                key = field.text or ""
            elif field.tag == size_tag:
                size = field.text
        if key is None or size is None or not size.isascii() or not size.isdigit():
            raise InvalidListing(f"the answer has an object with key {key!r} and size {size!r}")
        objects.append((decode(key), int(size)))
    prefixes = [
        decode(p.findtext(f"{ns}Prefix") or "") for p in root.iterfind(f"{ns}CommonPrefixes")
    ]
    token = root.findtext(f"{ns}NextContinuationToken")
    rest = f"<NextContinuationToken>{escape(token)}</NextContinuationToken>" if token else ""
    tail = f"<ListBucketResult><IsTruncated>{truncated}</IsTruncated>{rest}</ListBucketResult>"
    return Page(objects, prefixes), tail.encode()


# What XML 1.0 cannot carry, which a server writing the prefix as it came replaces by U+FFFD.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def echoes(echoed: str, prefix: str, decode: Callable[[str], str]) -> bool:
    """Whether a listing's `<Prefix>` is the requested `prefix`, in the spelling of one server
    or another.

    Asked for `EncodingType=url`, AWS S3 and moto url-encode the prefix they echo, as they
    encode the keys; SeaweedFS encodes the keys but echoes the prefix as it was sent, with the
    characters XML 1.0 cannot carry replaced by U+FFFD. Either spelling of the requested prefix
    is a listing of it; a decoded `+` is a space, so `+30/` sent raw would never match the
    encoded reading alone.
    """
    return decode(echoed) == prefix or echoed == NOT_XML.sub("\ufffd", prefix)


def list_pages(
    client: S3Client,
    bucket: str,
    prefix: str,
    delimiter: str | None = None,
    max_keys: int = 1000,
    start_after: str | None = None,
) -> Iterator[Page]:
    """Every page of objects under `prefix` (after `start_after`, if given), following
    continuation tokens (`paged`).

    botocore URL-decodes keys exactly once because it sets `EncodingType=url` itself.
    """
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        request["Delimiter"] = delimiter
    if start_after is not None:
        request["StartAfter"] = start_after

    def list_objects(**request: Any) -> Any:
        _requested.listing = (bucket, prefix)
        try:
            return client.list_objects_v2(**request)
        finally:
            _requested.listing = None

    where = f"s3://{bucket}/{prefix}"
    for response in paged(list_objects, request, where, ("NextContinuationToken",)):
        yield response[PAGE]


# The request parameter each marker of a response is sent back as.
_REQUEST_MARKER = {
    "NextContinuationToken": "ContinuationToken",
    "NextKeyMarker": "KeyMarker",
    "NextVersionIdMarker": "VersionIdMarker",
    "NextUploadIdMarker": "UploadIdMarker",
    "NextPartNumberMarker": "PartNumberMarker",
}


def paged(
    operation: Any,
    request: dict[str, Any],
    where: str,
    markers: tuple[str, ...],
    permission: str = "s3:ListBucket",
) -> Iterator[dict[str, Any]]:
    """Every response of a listing paged by `markers`, sent back as the server gave them,
    until a response says it is not truncated.

    A response that says it is truncated but gives no new marker is an error, never the end of
    the listing (botocore's paginators stop there silently).
    """
    seen: set[tuple[Any, ...]] = set()
    while True:
        page = call_s3(operation, request, where, permission)
        yield page
        if not page.get("IsTruncated"):
            return
        given = tuple(page.get(marker) or None for marker in markers)
        if all(value is None for value in given) or given in seen:
            what = "continuation token" if markers == ("NextContinuationToken",) else "marker"
            raise ListingError(f"listing {where} was truncated without a new {what} to go on")
        seen.add(given)
        for marker, value in zip(markers, given, strict=True):
            request.pop(_REQUEST_MARKER[marker], None)
            if value is not None:
                request[_REQUEST_MARKER[marker]] = value


def call_s3(
    operation: Any, request: dict[str, Any], where: str, permission: str = "s3:ListBucket"
) -> dict[str, Any]:
    """`operation(**request)`, with boto3's failures turned into one-line ListingErrors; an
    access denied names `permission`, the one the operation needs."""
    try:
        return operation(**request)  # type: ignore[no-any-return]  # botocore is untyped
    except NoCredentialsError as exc:
        raise ListingError(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise ListingError(f"cannot reach S3 for {where}: {exc}") from exc
    except ClientError as exc:
        raise ListingError(describe_client_error(exc, where, permission)) from exc
    except BotoCoreError as exc:
        raise ListingError(f"listing {where} failed: {exc}") from exc


def describe_client_error(exc: ClientError, where: str, permission: str = "s3:ListBucket") -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    bucket = where.removeprefix("s3://").split("/", 1)[0]
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist (check --storage-bucket / --thumbs-bucket)"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"access denied listing {where}: the credentials need {permission} on {bucket!r}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        return f"S3 refused the credentials ({code}) listing {where}"
    message = error.get("Message") or str(exc)
    return f"listing {where} failed after retries: {code} {message}".strip()
