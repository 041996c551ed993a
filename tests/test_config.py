from __future__ import annotations

import pytest

from storage_calc.config import indexed_shard, parse_base_url, parse_location, parse_shard
from storage_calc.errors import ConfigError
from storage_calc.model import Location, LocationKind, Shard

ART = LocationKind.ARTEFACT


def test_a_location_is_a_bucket() -> None:
    assert parse_location("dlcs-storage", ART) == Location("dlcs-storage", "", ART)


def test_a_location_prefix_always_ends_in_a_slash() -> None:
    assert parse_location("shared/dlcs/", ART) == Location("shared", "dlcs/", ART)
    assert parse_location("shared/dlcs", ART) == Location("shared", "dlcs/", ART)


@pytest.mark.parametrize("text", ["", "Bad_Bucket", "ab", "shared//x/", "-bucket"])
def test_a_malformed_location_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_location(text, ART)


def test_a_shard_is_index_over_count() -> None:
    assert parse_shard("1/4") == Shard(1, 4)


@pytest.mark.parametrize("text", ["4/4", "1/0", "-1/4", "a/b", "1", "1/4/2"])
def test_a_malformed_shard_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_a_base_url_loses_its_trailing_slash() -> None:
    assert parse_base_url("https://api.example.org/") == "https://api.example.org"


def test_a_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError):
        parse_base_url("ftp://api.example.org")


def test_an_indexed_shard_takes_its_index_from_kubernetes() -> None:
    assert indexed_shard("3", 8) == Shard(3, 8)


@pytest.mark.parametrize("index", [None, "8", "x"])
def test_an_indexed_shard_needs_a_valid_index(index: str | None) -> None:
    with pytest.raises(ConfigError):
        indexed_shard(index, 8)
