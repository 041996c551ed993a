"""`storage-calc demo`: the whole job on embedded services, for a first look.

It starts a local S3 endpoint (moto's server) on 127.0.0.1, fills it with a small sample shaped
like the API documentation's example, registers the sample's assets in the embedded database,
runs the real calculator against it over HTTP and returns the resources it produced.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storage_calc import calculator, db
from storage_calc.config import Settings
from storage_calc.errors import ConfigError, NotFound
from storage_calc.jsonld import customer_storage, image_storage
from storage_calc.model import RunReport, Scope
from storage_calc.sources.listing import make_s3_client

CUSTOMER = 2
ASSET = "my-asset"

# The documentation's example asset, object by object: 4,082,121 bytes of artefacts and
# 115,874 bytes of thumbnails.
EXAMPLE_ARTEFACTS = {"": 2_970_511, "/original": 1_110_000, "/info/iiif-image/3/info.json": 1_610}
EXAMPLE_THUMBNAILS = {
    "/open/100.jpg": 3_120,
    "/open/200.jpg": 9_874,
    "/open/400.jpg": 31_650,
    "/open/1024.jpg": 70_512,
    "/s.json": 718,
}


def sample() -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Registered asset ids, and the artefact and thumbnail objects (key -> size) of the sample.

    Customer 2 has 12 assets in space 5 and 8 in space 7, as in the documentation, plus an
    orphan (objects of an asset that is not registered) and an unattributed key.
    """
    rng = random.Random(CUSTOMER)
    assets = [f"{CUSTOMER}/5/{ASSET}"]
    assets += [f"{CUSTOMER}/5/image-{n:02d}" for n in range(1, 12)]
    assets += [f"{CUSTOMER}/7/recording-{n}" for n in range(1, 9)]
    artefacts = {f"{assets[0]}{suffix}": size for suffix, size in EXAMPLE_ARTEFACTS.items()}
    thumbnails = {f"{assets[0]}{suffix}": size for suffix, size in EXAMPLE_THUMBNAILS.items()}
    for asset_id in assets[1:]:
        if "/7/" in asset_id:
            artefacts[f"{asset_id}/full/max/default.mp3"] = rng.randrange(200_000, 900_000)
            artefacts[f"{asset_id}/original"] = rng.randrange(300_000, 1_200_000)
        else:
            artefacts[asset_id] = rng.randrange(100_000, 600_000)
            artefacts[f"{asset_id}/original"] = rng.randrange(200_000, 800_000)
            artefacts[f"{asset_id}/info/iiif-image/3/info.json"] = rng.randrange(900, 2_000)
        for edge in (100, 200, 400):
            thumbnails[f"{asset_id}/open/{edge}.jpg"] = rng.randrange(edge * 20, edge * 90)
    artefacts[f"{CUSTOMER}/5/deleted-asset/original"] = 250_000
    artefacts[f"{CUSTOMER}/pdf/report.pdf"] = 12_345
    return assets, artefacts, thumbnails


@contextmanager
def local_s3() -> Iterator[None]:
    """moto's S3 server on 127.0.0.1, with boto3's chain pointed at it until it stops."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ConfigError(
            "the demo needs the 'demo' extra: pip install 'storage-calc[demo]'"
        ) from exc
    # The server's request log would bury the demo's output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Port 0: the server binds a port the kernel chooses, which no other process can take first.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    names = (
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    )
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(
        zip(names, (f"http://127.0.0.1:{port}", "demo", "demo", "us-east-1"), strict=True)
    )
    try:
        yield
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(settings: Settings) -> tuple[RunReport, list[dict[str, Any]]]:
    """Runs the job on the sample and returns its report (with the layout it found) and the
    customer, space 5 and example asset resources."""
    assets, artefacts, thumbnails = sample()
    conn = db.connect(settings.database_url)
    try:
        db.migrate(conn)
        db.register_assets(conn, sorted(set(assets) - db.registered(conn, assets)))
        with local_s3():
            s3 = make_s3_client(settings.workers)
            for location, objects in zip(settings.locations, (artefacts, thumbnails), strict=False):
                s3.create_bucket(Bucket=location.bucket)
                for key, size in objects.items():
                    s3.put_object(
                        Bucket=location.bucket, Key=location.prefix + key, Body=b"\0" * size
                    )
            report = calculator.run(settings, s3, Scope(customer=CUSTOMER))
        base = settings.api_base_url
        layout = db.detect_layout(conn)
        customer_row = db.customer_storage(conn, layout, CUSTOMER, None)
        space_row = db.customer_storage(conn, layout, CUSTOMER, 5)
        asset_row = db.image_storage(conn, layout, CUSTOMER, 5, assets[0])
        if customer_row is None or space_row is None or asset_row is None:
            raise NotFound(f"the demo run wrote no figures for customer {CUSTOMER}: {report.error}")
        return report, [
            customer_storage(customer_row, base),
            customer_storage(space_row, base),
            image_storage(asset_row, base),
        ]
    finally:
        conn.close()
