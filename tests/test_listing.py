from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from storage_calc.errors import ConfigError, ListingError
from storage_calc.sources.listing import PAGE, Page, S3Client, list_pages, make_s3_client
from tests.conftest import STORAGE, RawBody


def keys(pages: Any) -> list[str]:
    return [key for page in pages for key, _ in page.objects]


def test_every_page_is_followed(s3: S3Client, put: Callable[..., None]) -> None:
    put(STORAGE, {f"2/5/foo/{n:04d}": 1 for n in range(1001)})
    pages = list(list_pages(s3, STORAGE, "2/5/"))
    assert len(pages) == 2
    assert len(keys(pages)) == 1001


def test_a_delimiter_gives_common_prefixes(s3: S3Client, put: Callable[..., None]) -> None:
    put(STORAGE, {"2/5/a": 1, "2/6/b": 1, "2/top": 1})
    (page,) = list(list_pages(s3, STORAGE, "2/", delimiter="/"))
    assert page.prefixes == ["2/5/", "2/6/"]
    assert page.objects == [("2/top", 1)]


@pytest.mark.parametrize("key", ["2/5/a b", "2/5/a+b", "2/5/a%41", "2/5/é", "2/5/a\x01b"])
def test_keys_are_decoded_exactly_once(s3: S3Client, put: Callable[..., None], key: str) -> None:
    put(STORAGE, {key: 1})
    assert keys(list_pages(s3, STORAGE, "2/5/")) == [key]


def test_a_truncated_page_without_a_token_is_an_error(
    s3: S3Client, put: Callable[..., None]
) -> None:
    put(STORAGE, {"2/5/a": 1, "2/5/b": 1})

    def drop_token(parsed: dict[str, Any], **_: Any) -> None:
        parsed["IsTruncated"] = True
        parsed.pop("NextContinuationToken", None)

    s3.meta.events.register("after-call.s3.ListObjectsV2", drop_token)
    with pytest.raises(ListingError, match="truncated without a new continuation token"):
        list(list_pages(s3, STORAGE, "2/5/"))


def test_the_same_token_twice_is_an_error(s3: S3Client, put: Callable[..., None]) -> None:
    put(STORAGE, {"2/5/a": 1, "2/5/b": 1, "2/5/c": 1})
    first: list[str] = []

    def repeat_token(parsed: dict[str, Any], **_: Any) -> None:
        first.append(parsed["NextContinuationToken"])
        parsed["NextContinuationToken"] = first[0]

    s3.meta.events.register("after-call.s3.ListObjectsV2", repeat_token)
    with pytest.raises(ListingError, match="truncated without a new continuation token"):
        list(list_pages(s3, STORAGE, "2/5/", max_keys=1))


def test_a_missing_bucket_is_named(s3: S3Client) -> None:
    with pytest.raises(ListingError, match="bucket 'no-such-bucket' does not exist"):
        list(list_pages(s3, "no-such-bucket", ""))


def test_access_denied_says_which_permission(
    s3: S3Client, fail_listing: Callable[..., None]
) -> None:
    fail_listing("prefix=2")
    with pytest.raises(ListingError, match="access denied listing s3://dlcs-storage/2/"):
        list(list_pages(s3, STORAGE, "2/"))


def test_missing_credentials_say_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = make_s3_client(1)
    with pytest.raises(ListingError, match="no AWS credentials found"):
        list(list_pages(client, STORAGE, ""))


def test_the_client_retries_in_standard_mode_with_10_attempts(s3: S3Client) -> None:
    assert s3.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}


def test_the_operators_retry_settings_win(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    client = make_s3_client(1)
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}


def test_an_unknown_profile_is_a_config_error(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="the AWS configuration is unusable"):
        make_s3_client(1)


def test_throttled_pages_are_retried(s3: S3Client, put: Callable[..., None]) -> None:
    put(STORAGE, {"2/5/a": 3})
    answers: list[int] = []  # the status of every attempt

    def throttle(request: Any, **_: Any) -> Any:
        from tests.conftest import error_response

        answers.append(503 if len(answers) < 2 else 200)
        return error_response(503, "SlowDown") if answers[-1] == 503 else None

    s3.meta.events.register("before-send.s3.ListObjectsV2", throttle)
    assert [p.objects for p in list_pages(s3, STORAGE, "2/5/")] == [[("2/5/a", 3)]]
    assert answers == [503, 503, 200]


def test_the_client_reads_listings_itself_and_leaves_botocore_the_paging(
    s3: S3Client, put: Callable[..., None]
) -> None:
    put(STORAGE, {"2/5/a b": 3, "2/5/c": 4})
    response = s3.list_objects_v2(Bucket=STORAGE, Prefix="2/5/", MaxKeys=1)
    assert "Contents" not in response
    assert response[PAGE] == Page([("2/5/a b", 3)], [])
    assert response["IsTruncated"] is True and response["NextContinuationToken"]


def test_an_error_response_is_left_to_botocore(s3: S3Client) -> None:
    with pytest.raises(ClientError, match="NoSuchBucket"):
        s3.list_objects_v2(Bucket="no-such-bucket")


@pytest.mark.parametrize(
    "body",
    [
        b"<Error><Code>InternalError</Code><Message>sent with 200</Message></Error>",
        b'<?xml version="1.0"?><ListBucketResult><Contents><Key>2/5/a</Ke',
    ],
)
def test_an_error_or_a_truncated_body_sent_with_200_is_retried(
    s3: S3Client, put: Callable[..., None], body: bytes
) -> None:
    put(STORAGE, {"2/5/a": 3})
    attempts: list[str] = []

    def answer(request: Any, **_: Any) -> Any:
        attempts.append("bad body" if not attempts else "moto")
        if attempts[-1] == "bad body":
            return AWSResponse(request.url, 200, {}, RawBody(body))
        return None

    s3.meta.events.register("before-send.s3.ListObjectsV2", answer)
    assert [p.objects for p in list_pages(s3, STORAGE, "2/5/")] == [[("2/5/a", 3)]]
    assert attempts == ["bad body", "moto"]
