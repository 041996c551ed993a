"""The documented JSON-LD resources (storage-api.txt), built from rows. Pure: no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from storage_calc.model import CustomerStorageRow, ImageStorageRow, StoragePolicyRow


def format_timestamp(moment: datetime | None) -> str | None:
    """UTC with seven fractional digits and `Z`, as the documentation shows them."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def encode_segment(text: str) -> str:
    """Every byte of `text`'s UTF-8 outside RFC 3986's unreserved set, percent-encoded."""
    return quote(text, safe="")


def policy_url(base_url: str, policy: str) -> str:
    return f"{base_url}/storagePolicies/{encode_segment(policy)}"


def customer_storage(row: CustomerStorageRow, base_url: str) -> dict[str, Any]:
    """A CustomerStorage resource, with the `@id` the platform's API gives the row: a space row,
    and the seed layout's customer-level row at space 0, under `/spaces/{space}`; the current
    layout's customer-level row (a NULL space) at `/customers/{c}/storage`. The adjunct figures
    appear where the layout has them."""
    path = "" if row.space is None else f"/spaces/{row.space}"
    resource = {
        "@context": f"{base_url}/contexts/CustomerStorage.jsonld",
        "@id": f"{base_url}/customers/{row.customer}{path}/storage",
        "@type": "vocab:CustomerStorage",
        "numberOfStoredImages": row.number_of_stored_images,
        "totalSizeOfStoredImages": row.total_size_of_stored_images,
        "totalSizeOfThumbnails": row.total_size_of_thumbnails,
        "numberOfStoredAdjuncts": row.number_of_stored_adjuncts,
        "totalSizeOfStoredAdjuncts": row.total_size_of_stored_adjuncts,
        "lastCalculated": format_timestamp(row.last_calculated),
        "storagePolicy": policy_url(base_url, row.storage_policy or "default"),
    }
    return _without_nulls(resource)


def image_storage(row: ImageStorageRow, base_url: str) -> dict[str, Any]:
    """An ImageStorage resource, with `adjunctSize` where the layout has it."""
    resource = {
        "@context": f"{base_url}/contexts/ImageStorage.jsonld",
        "@id": (
            f"{base_url}/customers/{row.customer}/spaces/{row.space}"
            f"/images/{encode_segment(row.asset)}/storage"
        ),
        "@type": "vocab:ImageStorage",
        "thumbnailSize": row.thumbnail_size,
        "size": row.size,
        "adjunctSize": row.adjunct_size,
        "lastChecked": format_timestamp(row.last_checked),
        "checkingInProgress": row.checking_in_progress,
    }
    return _without_nulls(resource)


def _without_nulls(resource: dict[str, Any]) -> dict[str, Any]:
    """The platform's API leaves null values out."""
    return {key: value for key, value in resource.items() if value is not None}


def storage_policy(row: StoragePolicyRow, base_url: str) -> dict[str, Any]:
    """A StoragePolicy resource."""
    return {
        "@context": f"{base_url}/contexts/StoragePolicy.jsonld",
        "@id": policy_url(base_url, row.id),
        "@type": "vocab:StoragePolicy",
        "maximumNumberOfStoredImages": row.maximum_number_of_stored_images,
        "maximumTotalSizeOfStoredImages": row.maximum_total_size_of_stored_images,
    }


def render(resource: dict[str, Any]) -> str:
    """The resource as the JSON text `show` prints and the HTTP API serves."""
    return json.dumps(resource, indent=2, ensure_ascii=False)
