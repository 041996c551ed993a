"""A deterministic dataset in the platform's key layout, with its ground truth."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

TILED_OBJECTS = 1_200  # one asset with more than a page of objects
# Changed whenever `generate` makes other keys, so that a cache of the old keys is not reused.
VERSION = 2
# Names that S3-compatible servers spell differently in a listing, given to one asset in
# `ODD_EVERY` in turn: each `{}` is the asset's number.
ODD_NAMES = ("a+{}", "a {}", "a%2B{}", "a%{}", "é{}")
ODD_EVERY = 50
# Objects outside every customer at the top level of the storage bucket: a stray prefix that a
# mistyped `aws s3 cp` leaves, its spelled-out twin, and a file.
STRAYS = {"+30/4/x": 7, "%2B7/x": 8, "a+b.txt": 9}


class Layout(StrEnum):
    """Where the assets are: spread over the customers and their spaces, or all in customer 1's
    space 1, as on a platform where one customer stores nearly everything."""

    SPREAD = "spread"
    DOMINANT = "dominant"


@dataclass
class Dataset:
    """Objects (key -> size) per bucket, registered asset ids, and the expected figures."""

    storage: dict[str, int] = field(default_factory=dict)
    thumbs: dict[str, int] = field(default_factory=dict)
    assets: list[str] = field(default_factory=list)
    # customer -> [assets, artefact bytes, thumbnail bytes]
    truth: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    # Objects outside every customer prefix, which a run counts as unattributed.
    outside: int = 0

    @property
    def objects(self) -> int:
        return len(self.storage) + len(self.thumbs)

    def add_asset(self, asset_id: str, artefacts: dict[str, int], thumbs: dict[str, int]) -> None:
        customer = int(asset_id.split("/", 1)[0])
        self.assets.append(asset_id)
        row = self.truth[customer]
        row[0] += 1
        for suffix, size in artefacts.items():
            self.storage[asset_id + suffix] = size
            row[1] += size
        for suffix, size in thumbs.items():
            self.thumbs[asset_id + suffix] = size
            row[2] += size


def generate(
    objects: int, customers: int = 20, seed: int = 2, layout: Layout = Layout.SPREAD
) -> Dataset:
    """About `objects` objects over `customers` customers of 1 to 4 spaces each: images, audio
    and video with originals, info.json, AV outputs, thumbnails and legacy thumbnails, one asset
    with more than 1,000 objects, orphans (objects of unregistered ids), `transient/` keys, one
    asset in `ODD_EVERY` named with `+`, a space, `%2B` or `%` or a non-ASCII letter, and the
    `STRAYS` outside every customer.

    The dominant layout has the same objects of the same kinds and sizes, every one of them
    under customer 1's space 1."""
    rng = random.Random(seed)
    data = Dataset()
    spaces = {c: list(range(1, rng.randint(1, 4) + 1)) for c in range(1, customers + 1)}

    def size() -> int:
        return rng.randint(1, 64)

    tiles = {f"/tiles/{n:05d}.jpg": size() for n in range(min(TILED_OBJECTS, objects // 10))}
    data.add_asset("1/1/tiled", {"": size(), **tiles}, {"/open/100.jpg": size()})
    dominant = layout is Layout.DOMINANT
    n = 0
    while data.objects < objects:
        n += 1
        # Both layouts make the same draws, so that they differ only in where the keys are.
        drawn = rng.randint(1, customers)
        drawn_space = rng.choice(spaces[drawn])
        customer, space = (1, 1) if dominant else (drawn, drawn_space)
        odd = ODD_NAMES[n // ODD_EVERY % len(ODD_NAMES)] if n % ODD_EVERY == 0 else "asset-{}"
        asset_id = f"{customer}/{space}/{odd.format(f'{n:07d}')}"
        kind = rng.random()
        if kind < 0.02:
            orphan_bytes = size()  # drawn before the orphan's space, as it always was
            drawn_space = rng.choice(spaces[drawn])
            orphan_space = space if dominant else drawn_space
            data.storage[f"{customer}/{orphan_space}/orphan-{n}/original"] = orphan_bytes
            continue
        if kind < 0.03:
            data.storage[f"transient/{asset_id}"] = size()
            data.outside += 1
            continue
        if kind < 0.10:
            artefacts = {"/full/max/default.mp3": size(), "/original": size(), "/metadata": size()}
            thumbs = {"/low.jpg": size()}
        elif kind < 0.15:
            artefacts = {"/full/full/max/max/0/default.mp4": size(), "/original": size()}
            thumbs = {"/low.jpg": size(), "/s.json": size()}
        else:
            artefacts = {"": size(), "/original": size(), "/info/iiif-img/3/info.json": size()}
            thumbs = {f"/open/{edge}.jpg": size() for edge in (100, 200, 400)} | {"/s.json": size()}
            if kind > 0.95:
                thumbs["/full/100,200/0/default.jpg"] = size()
        data.add_asset(asset_id, artefacts, thumbs)
    data.storage.update(STRAYS)
    data.outside += len(STRAYS)
    return data
