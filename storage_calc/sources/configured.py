"""The source a run's settings name: the buckets' listings or their S3 Inventory reports."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from storage_calc.config import Settings
from storage_calc.model import Layout
from storage_calc.progress import RunProgress
from storage_calc.sources import Source
from storage_calc.sources.inventory_source import opened
from storage_calc.sources.listing import S3Client
from storage_calc.sources.walk import Listing


@contextlib.contextmanager
def configured_source(
    settings: Settings,
    layout: Layout,
    s3: S3Client,
    pool: ThreadPoolExecutor,
    stop: threading.Event,
    progress: RunProgress,
) -> Iterator[Source]:
    """The source of `settings.source` for the duration of the block: a listing on `pool`, or
    the newest inventory reports, checked, downloaded and summed (see `inventory_source.opened`),
    their files removed when the block ends."""
    if settings.source == "inventory":
        with opened(settings, s3, layout, stop) as inventory:
            yield inventory
    else:
        yield Listing(settings, layout, s3, pool, stop, progress)
