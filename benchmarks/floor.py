"""The floor: signed raw ListObjectsV2 GETs on 4 threads, XML parsed with ElementTree, sizes
summed and nothing else. `python benchmarks/floor.py ENDPOINT BUCKET...` prints keys and bytes.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote
from xml.etree import ElementTree

import botocore.session
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def lister(endpoint: str) -> tuple[urllib3.PoolManager, SigV4Auth]:
    credentials = botocore.session.Session().get_credentials()
    return urllib3.PoolManager(maxsize=8), SigV4Auth(credentials, "s3", "us-east-1")


def list_prefix(
    endpoint: str, bucket: str, prefix: str, delimiter: str = ""
) -> tuple[int, int, list[str]]:
    http, auth = lister(endpoint)
    keys = total = 0
    prefixes: list[str] = []
    token = None
    while True:
        query = f"list-type=2&prefix={quote(prefix, safe='')}"
        if delimiter:
            query += f"&delimiter={quote(delimiter, safe='')}"
        if token:
            query += f"&continuation-token={quote(token, safe='')}"
        request = AWSRequest("GET", f"{endpoint}/{bucket}?{query}")
        auth.add_auth(request)
        response = http.request("GET", request.url, headers=dict(request.headers))
        root = ElementTree.fromstring(response.data)
        for contents in root.iterfind(f"{NS}Contents"):
            keys += 1
            total += int(contents.findtext(f"{NS}Size") or 0)
        prefixes += [p.findtext(f"{NS}Prefix") or "" for p in root.iterfind(f"{NS}CommonPrefixes")]
        if root.findtext(f"{NS}IsTruncated") != "true":
            return keys, total, prefixes
        token = root.findtext(f"{NS}NextContinuationToken")


def listed(endpoint: str, buckets: list[str]) -> tuple[int, int]:
    """Keys and bytes in `buckets`: the top level of each, then every prefix under it, four
    prefixes at a time."""
    keys = total = 0
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for bucket in buckets:
            top_keys, top_bytes, prefixes = list_prefix(endpoint, bucket, "", "/")
            keys, total = keys + top_keys, total + top_bytes
            futures += [pool.submit(list_prefix, endpoint, bucket, p) for p in prefixes]
        for future in futures:
            k, b, _ = future.result()
            keys, total = keys + k, total + b
    return keys, total


if __name__ == "__main__":
    print(*listed(sys.argv[1], sys.argv[2:]))
