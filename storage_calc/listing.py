"""S3 listings: the one place that makes a boto3 client and walks ListObjectsV2 pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
    which is most of its work per key and which the job never reads.
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
    except BotoCoreError as exc:
        raise ConfigError(f"the AWS configuration is unusable: {exc}") from exc
    read_listings_first(client.meta.events)
    return client


def retry_config(session: botocore.session.Session) -> dict[str, Any]:
    """The operator's retry mode and attempts where set, the job's defaults otherwise."""
    mode = os.environ.get("AWS_RETRY_MODE") or session.get_scoped_config().get("retry_mode")
    attempts = session.get_config_variable("max_attempts")
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
    the way botocore would (`unquote_plus`). Anything else (an error status, an `<Error>` sent
    with 200, a truncated or malformed body) is left as it came, for botocore to report or
    retry as usual.
    """
    if operation_model.name != "ListObjectsV2" or response_dict["status_code"] != 200:
        return
    try:
        root = ElementTree.fromstring(response_dict["body"])
    except ElementTree.ParseError:
        return
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != f"{ns}ListBucketResult":
        return
    decode = unquote_plus if root.findtext(f"{ns}EncodingType") == "url" else str
    key_tag, size_tag = f"{ns}Key", f"{ns}Size"
    objects = []
    for contents in root.iterfind(f"{ns}Contents"):
        key = size = None
        for field in contents:
            if field.tag == key_tag:
                key = field.text or ""
            elif field.tag == size_tag:
                size = field.text
        objects.append((decode(key or ""), int(size or 0)))
    prefixes = [
        decode(p.findtext(f"{ns}Prefix") or "") for p in root.iterfind(f"{ns}CommonPrefixes")
    ]
    customized_response_dict[PAGE] = Page(objects, prefixes)
    truncated = escape(root.findtext(f"{ns}IsTruncated") or "false")
    token = root.findtext(f"{ns}NextContinuationToken")
    rest = f"<NextContinuationToken>{escape(token)}</NextContinuationToken>" if token else ""
    response_dict["body"] = (
        f"<ListBucketResult><IsTruncated>{truncated}</IsTruncated>{rest}</ListBucketResult>"
    ).encode()


def list_pages(
    client: S3Client, bucket: str, prefix: str, delimiter: str | None = None, max_keys: int = 1000
) -> Iterator[Page]:
    """Every page of objects under `prefix`, following continuation tokens.

    botocore URL-decodes keys exactly once because it sets `EncodingType=url` itself. A page
    that says it is truncated but gives no new token is an error, never the end of the listing
    (botocore's paginator would stop there silently).
    """
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
    if delimiter:
        request["Delimiter"] = delimiter
    seen_tokens: set[str] = set()
    while True:
        response = call_s3(client.list_objects_v2, request, f"s3://{bucket}/{prefix}")
        yield response.get(PAGE) or Page(
            [(o["Key"], o["Size"]) for o in response.get("Contents", ())],
            [p["Prefix"] for p in response.get("CommonPrefixes", ())],
        )
        if not response.get("IsTruncated"):
            return
        token = response.get("NextContinuationToken")
        if not token or token in seen_tokens:
            raise ListingError(
                f"listing s3://{bucket}/{prefix} was truncated without a new continuation token"
            )
        seen_tokens.add(token)
        request["ContinuationToken"] = token


def call_s3(operation: Any, request: dict[str, Any], where: str) -> dict[str, Any]:
    """`operation(**request)`, with boto3's failures turned into one-line ListingErrors."""
    try:
        return operation(**request)  # type: ignore[no-any-return]
    except NoCredentialsError as exc:
        raise ListingError(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise ListingError(f"cannot reach S3 for {where}: {exc}") from exc
    except ClientError as exc:
        raise ListingError(describe_client_error(exc, where)) from exc
    except BotoCoreError as exc:
        raise ListingError(f"listing {where} failed: {exc}") from exc


def describe_client_error(exc: ClientError, where: str) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    bucket = where.removeprefix("s3://").split("/", 1)[0]
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist (check --storage-bucket / --thumbs-bucket)"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"access denied listing {where}: the credentials need s3:ListBucket on {bucket!r}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        return f"S3 refused the credentials ({code}) listing {where}"
    message = error.get("Message") or str(exc)
    return f"listing {where} failed after retries: {code} {message}".strip()
