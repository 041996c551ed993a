"""The run history in the job's schema: runs, each customer's outcome, the rows it changed and
the orphans it found."""

from __future__ import annotations

from datetime import datetime

from storage_calc.db.connection import (
    Connection,
    execute,
    translated,
)
from storage_calc.db.sessions import (
    RUN_LOCK_NAMESPACE,
    lock_run,
)
from storage_calc.model import (
    CustomerResult,
    Outcome,
    PrunedFigures,
    RunReport,
    Scope,
)


def start_run(conn: Connection, started: datetime, scope: str, shard: str | None) -> int:
    """Records a new run, held by `conn`'s session until it ends, and closes the runs whose
    process died as `abandoned`. The run is locked before it is visible, so that no other run
    can take it for abandoned."""
    with translated("recording the run failed"), conn.transaction():
        execute(conn, "close_abandoned_runs", namespace=RUN_LOCK_NAMESPACE)
        row = execute(conn, "insert_run", started=started, scope=scope, shard=shard).fetchone()
        assert row is not None
        lock_run(conn, row[0])
    return row[0]  # type: ignore[no-any-return]  # psycopg's rows are tuples of Any


def record_customer(conn: Connection, run_id: int, scope: Scope, result: CustomerResult) -> None:
    """Records what computing one customer gave: its outcome and, when done, the rows it
    changed and the orphans it found. Once per run and customer: a retry after a commit whose
    answer was lost records nothing more."""
    with (
        translated(f"recording the history of customer {result.customer} failed"),
        conn.transaction(),
    ):
        recorded = execute(
            conn,
            "insert_customer_run",
            run_id=run_id,
            customer=result.customer,
            space=scope.asset.space if scope.asset else scope.space,
            asset=scope.asset.id if scope.asset else None,
            outcome=result.outcome.value,
            objects=result.objects,
            bytes=result.bytes,
            assets=result.assets,
            orphans=result.orphan_objects,
            orphan_bytes=result.orphan_bytes,
            unattributed=result.unattributed_objects,
            seconds=result.seconds,
            error=result.error,
            misfiled=result.misfiled.count,
            misfiled_examples=list(result.misfiled.examples),
        ).fetchone()
        if recorded is None:
            return
        for change in result.changes:
            before, after = change.before, change.after
            execute(
                conn,
                "insert_change",
                run_id=run_id,
                customer=change.customer,
                space=None if change.customer_row else change.space,
                images_before=before.number_of_stored_images,
                images_after=after.number_of_stored_images,
                size_before=before.total_size_of_stored_images,
                size_after=after.total_size_of_stored_images,
                thumbnails_before=before.total_size_of_thumbnails,
                thumbnails_after=after.total_size_of_thumbnails,
                adjuncts_before=before.number_of_stored_adjuncts,
                adjuncts_after=after.number_of_stored_adjuncts,
                adjunct_size_before=before.total_size_of_stored_adjuncts,
                adjunct_size_after=after.total_size_of_stored_adjuncts,
            )
        for orphan in result.orphans:
            execute(
                conn,
                "insert_orphans",
                run_id=run_id,
                customer=orphan.customer,
                space=orphan.space,
                objects=orphan.objects,
                bytes=orphan.bytes,
                assets=orphan.assets,
                examples=list(orphan.examples),
            )


def finish_run(conn: Connection, run_id: int, report: RunReport) -> None:
    with translated("recording the end of the run failed"):
        execute(
            conn,
            "finish_run",
            run_id=run_id,
            outcome=report.outcome,
            objects=report.objects,
            bytes=report.bytes,
            assets=report.assets,
            orphans=report.orphan_objects,
            orphan_bytes=report.orphan_bytes,
            unattributed=report.unattributed,
            unattributed_bytes=report.unattributed_bytes,
            customers=len(report.customers),
            customers_failed=len(report.with_outcome(Outcome.FAILED)),
            customers_skipped=len(report.with_outcome(Outcome.LOCKED)),
            drift_bytes=report.drift_bytes,
            error=report.error_summary,
            misfiled=report.misfiled,
            uncounted=[u.prefix for u in report.uncounted],
        )


def prune_runs(conn: Connection, before: datetime) -> int:
    """Deletes the runs started before `before`, with their changes, orphans and customer
    results; returns how many runs were deleted."""
    with translated("pruning the run history failed"), conn.transaction():
        return execute(conn, "prune_runs", before=before).rowcount


def prune_figures(conn: Connection, before: datetime) -> PrunedFigures:
    """Deletes the figures over time from before `before` that no period from then on needs:
    every step but the latest of each space, and the commits but those of the steps kept."""
    with translated("pruning the figures over time failed"), conn.transaction():
        steps = execute(conn, "prune_steps", before=before).rowcount
        commits = execute(conn, "prune_commits", before=before).rowcount
        kept = execute(conn, "steps_kept", before=before).fetchone()
    assert kept is not None  # an aggregate: always one row
    return PrunedFigures(before, steps, commits, kept[0], kept[1])
