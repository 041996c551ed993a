"""storage-calc: storage figures of a digital asset platform, recomputed from S3 listings."""

from __future__ import annotations

__version__ = "0.1.0"
