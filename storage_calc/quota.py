"""The step after a run that wrote figures: a warning for each of its customers at or beyond
the quota margin of a limit of its storage policy."""

from __future__ import annotations

import structlog

from storage_calc import db, reports
from storage_calc.config import Settings
from storage_calc.errors import StorageCalcError
from storage_calc.model import Outcome, RunReport

log = structlog.get_logger("storage_calc")


def warn(settings: Settings, report: RunReport) -> None:
    """Logs `quota_near` or `quota_exceeded` for each customer the run computed and wrote that
    uses at least `settings.quota_margin` percent of a limit; a failed check is logged and
    changes nothing else. A dry run wrote nothing, so there is nothing to check."""
    computed = [c.customer for c in report.with_outcome(Outcome.DONE)]
    if report.dry_run or not computed:
        return
    with structlog.contextvars.bound_contextvars(run_id=report.run_id):
        try:
            with db.connect(settings.database_url) as conn:
                uses = reports.quota_use(conn, settings.quota_margin, computed)
        except StorageCalcError as exc:
            log.error("quota_check_failed", error=str(exc))
            return
        for use in uses:
            log.warning(
                "quota_exceeded" if use.status == "over" else "quota_near",
                customer=use.customer,
                storage_policy=use.storage_policy,
                images=use.images,
                max_images=use.max_images,
                images_percent=float(use.images_percent),
                size_bytes=use.size_bytes,
                max_size_bytes=use.max_size_bytes,
                size_percent=float(use.size_percent),
                margin_percent=float(settings.quota_margin),
            )
