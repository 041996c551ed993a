from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from storage_calc.jsonld import (
    customer_storage,
    format_timestamp,
    image_storage,
    render,
    storage_policy,
)
from storage_calc.model import CustomerStorageRow, ImageStorageRow, StoragePolicyRow

BASE = "https://api.dlcs.example"


def test_timestamps_have_seven_fractional_digits_and_z() -> None:
    moment = datetime(2026, 2, 23, 1, 0, 44, 474249, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-02-23T01:00:44.4742490Z"


def test_timestamps_are_converted_to_utc() -> None:
    moment = datetime(2026, 2, 23, 2, 0, 44, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-02-23T01:00:44.0000000Z"


def test_customer_level_storage_is_the_documented_resource() -> None:
    row = CustomerStorageRow(
        2,
        0,
        "default",
        20,
        150536377,
        4963884,
        datetime(2026, 2, 23, 1, 0, 44, 474249, tzinfo=UTC),
    )
    assert render(customer_storage(row, BASE)) == json.dumps(
        {
            "@context": "https://api.dlcs.example/contexts/CustomerStorage.jsonld",
            "@id": "https://api.dlcs.example/customers/2/spaces/0/storage",
            "@type": "vocab:CustomerStorage",
            "numberOfStoredImages": 20,
            "totalSizeOfStoredImages": 150536377,
            "totalSizeOfThumbnails": 4963884,
            "lastCalculated": "2026-02-23T01:00:44.4742490Z",
            "storagePolicy": "https://api.dlcs.example/storagePolicies/default",
        },
        indent=2,
    )


def test_a_space_without_a_policy_links_the_default_policy() -> None:
    row = CustomerStorageRow(2, 5, None, 12, 101847062, 2734502, None)
    resource = customer_storage(row, BASE)
    assert resource["@id"] == "https://api.dlcs.example/customers/2/spaces/5/storage"
    assert resource["storagePolicy"] == "https://api.dlcs.example/storagePolicies/default"


def test_image_storage_is_the_documented_resource() -> None:
    row = ImageStorageRow(
        "2/5/my-asset",
        2,
        5,
        115874,
        4082121,
        datetime(2026, 2, 18, 16, 22, 11, 483594, tzinfo=UTC),
        False,
    )
    assert list(image_storage(row, BASE).items()) == [
        ("@context", "https://api.dlcs.example/contexts/ImageStorage.jsonld"),
        ("@id", "https://api.dlcs.example/customers/2/spaces/5/images/my-asset/storage"),
        ("@type", "vocab:ImageStorage"),
        ("thumbnailSize", 115874),
        ("size", 4082121),
        ("lastChecked", "2026-02-18T16:22:11.4835940Z"),
        ("checkingInProgress", False),
    ]


def test_the_asset_in_an_id_is_percent_encoded_outside_the_unreserved_set() -> None:
    row = ImageStorageRow("2/5/a b+c%d:é~_.-", 2, 5, 0, 0, None, False)
    assert image_storage(row, BASE)["@id"].endswith("/images/a%20b%2Bc%25d%3A%C3%A9~_.-/storage")


def test_storage_policy_is_the_documented_resource() -> None:
    row = StoragePolicyRow("default", 1000000000, 1125899906842624)
    assert storage_policy(row, BASE) == {
        "@context": "https://api.dlcs.example/contexts/StoragePolicy.jsonld",
        "@id": "https://api.dlcs.example/storagePolicies/default",
        "@type": "vocab:StoragePolicy",
        "maximumNumberOfStoredImages": 1000000000,
        "maximumTotalSizeOfStoredImages": 1125899906842624,
    }
