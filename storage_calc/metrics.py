"""Prometheus metrics of runs, in the conventions of batch jobs: gauges of the last run and the
Unix time of the last success, to alert on `time() - storage_calc_last_success_timestamp_seconds`.

Labels stay few (the outcome of a customer, the kind of scope, the shard): per-customer and
per-asset figures belong in the database, never in label values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway
from prometheus_client.exposition import start_http_server

from storage_calc.errors import StorageCalcError
from storage_calc.model import Billable, Outcome, RunReport
from storage_calc.progress import RunProgress

log = structlog.get_logger("storage_calc")

JOB = "storage-calc"
PUSH_TIMEOUT_S = 10


class RunMetrics:
    """The metrics of the runs of one process, in their own registry."""

    def __init__(self, registry: CollectorRegistry, last_success: bool = True) -> None:
        self.registry = registry

        self.last_success = (
            self.gauge(
                "last_success_timestamp_seconds",
                "When the last successful run finished, as a Unix time; 0 if none has.",
            )
            if last_success
            else None
        )
        self.last_run = self.gauge(
            "last_run_timestamp_seconds",
            "When the last run finished, successful or not, as a Unix time.",
        )
        self.success = self.gauge("last_run_success", "1 if the last run succeeded, else 0.")
        self.duration = self.gauge("last_run_duration_seconds", "How long the last run took.")
        self.objects = self.gauge("last_run_objects", "Objects the last run listed.")
        self.bytes = self.gauge("last_run_bytes", "Bytes of the objects the last run listed.")
        self.customers = self.gauge(
            "last_run_customers",
            "Customers of the last run: computed, failed, or skipped (locked by another run).",
            ("outcome",),
        )
        self.orphan_bytes = self.gauge(
            "last_run_orphan_bytes",
            "Bytes of objects whose asset is not registered, found by the last run.",
        )
        self.drift_bytes = self.gauge(
            "last_run_drift_bytes",
            "Sum over changed customer rows of the absolute change of stored and thumbnail bytes.",
        )
        for label in CUSTOMER_OUTCOMES:
            self.customers.labels(label)
        self.billable_bytes = self.gauge(
            "last_run_billable_bytes",
            "Bytes S3 bills for storage of the customers the last run computed them for: current, "
            "noncurrent, incomplete_upload (parts of unfinished multipart uploads), and billed "
            "(all of it, at the billed sizes of the storage classes).",
            ("kind",),
        )
        self.billable_objects = self.gauge(
            "last_run_billable_objects",
            "Entries S3 bills for storage of the customers the last run computed them for: "
            "current, noncurrent (versions), delete_marker and incomplete_upload.",
            ("kind",),
        )

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge `storage_calc_<name>` in this registry."""
        return Gauge(f"storage_calc_{name}", documentation, labels, registry=self.registry)

    def observe(self, report: RunReport) -> None:
        """Sets every gauge from a finished run."""
        finished = report.finished.timestamp()
        succeeded = succeeded_run(report)
        if succeeded and self.last_success is not None:
            self.last_success.set(finished)
        self.last_run.set(finished)
        self.success.set(1 if succeeded else 0)
        self.duration.set(report.duration_seconds)
        self.objects.set(report.objects)
        self.bytes.set(report.bytes)
        for label, outcome in CUSTOMER_OUTCOMES.items():
            self.customers.labels(label).set(len(report.with_outcome(outcome)))
        self.orphan_bytes.set(report.orphan_bytes)
        self.drift_bytes.set(report.drift_bytes)
        # A run that computed no billable bytes leaves these out, so that a pushed group keeps
        # the figures of the last run that did.
        if report.billable is not None:
            for kind, value in billable_bytes(report.billable).items():
                self.billable_bytes.labels(kind).set(value)
            for kind, value in billable_objects(report.billable).items():
                self.billable_objects.labels(kind).set(value)


CUSTOMER_OUTCOMES = {"computed": Outcome.DONE, "failed": Outcome.FAILED, "skipped": Outcome.LOCKED}


def billable_bytes(rows: Sequence[Billable]) -> dict[str, int]:
    """The bytes of `rows` summed by the `kind` label."""
    return {
        "current": sum(r.current_bytes for r in rows),
        "noncurrent": sum(r.noncurrent_bytes for r in rows),
        "incomplete_upload": sum(r.incomplete_upload_bytes for r in rows),
        "billed": sum(r.billed_bytes for r in rows),
    }


def billable_objects(rows: Sequence[Billable]) -> dict[str, int]:
    """The entries of `rows` counted by the `kind` label."""
    return {
        "current": sum(r.current_objects for r in rows),
        "noncurrent": sum(r.noncurrent_versions for r in rows),
        "delete_marker": sum(r.delete_markers for r in rows),
        "incomplete_upload": sum(r.incomplete_uploads for r in rows),
    }


def succeeded_run(report: RunReport) -> bool:
    return report.outcome == "done"


def grouping_key(report: RunReport) -> dict[str, str]:
    """Runs of different kinds of scope, and different shards, are kept apart on the gateway,
    so that a rerun of one asset never stands for the nightly run over everything."""
    key = {"scope": report.scope.kind}
    if report.shard is not None:
        key["shard"] = str(report.shard)
    return key


def push(gateway: str, report: RunReport) -> bool:
    """Pushes the run's metrics to a Pushgateway (POST: only these metrics of the group are
    replaced). A failed run pushes no last-success time, so the previous one stays.

    A push that fails is logged and reported as False: the figures are written by then, and a
    missing push shows up in monitoring as a stale last success.
    """
    metrics = RunMetrics(CollectorRegistry(), last_success=succeeded_run(report))
    metrics.observe(report)
    try:
        pushadd_to_gateway(
            gateway,
            JOB,
            metrics.registry,
            grouping_key=grouping_key(report),
            timeout=PUSH_TIMEOUT_S,
        )
    except OSError as exc:
        log.error("metrics_push_failed", gateway=gateway, error=str(exc), run_id=report.run_id)
        return False
    log.info("metrics_pushed", gateway=gateway, run_id=report.run_id, **grouping_key(report))
    return True


class ScheduleMetrics(RunMetrics):
    """The metrics `schedule` serves: those of its last run, counts of runs by outcome, when
    the next run is due, and the progress of the run going on, so that a long run can be
    watched while it lists."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.runs = Counter(
            "storage_calc_runs", "Runs finished, by outcome.", ["outcome"], registry=self.registry
        )
        self.next_run = self.gauge(
            "next_run_timestamp_seconds", "When the next scheduled run is due, as a Unix time."
        )
        self.started = self.gauge(
            "schedule_start_timestamp_seconds", "When this scheduler started, as a Unix time."
        )
        self.started.set(time.time())
        self.current_objects = self.gauge(
            "current_run_objects", "Objects listed so far by the run going on; 0 between runs."
        )
        self.current_customers = self.gauge(
            "current_run_customers_done",
            "Customers finished so far by the run going on; 0 between runs.",
        )

    def watch(self, progress: RunProgress) -> None:
        """Reads the progress of the run that starts, at every scrape."""
        self.current_objects.set_function(lambda: progress.objects)
        self.current_customers.set_function(lambda: progress.customers_done)

    def observe(self, report: RunReport) -> None:
        super().observe(report)
        self.runs.labels(report.outcome).inc()
        self.watch(RunProgress())

    def serve(self, port: int, address: str) -> None:
        """Serves /metrics on a thread of its own until the process exits."""
        try:
            start_http_server(port, address, registry=self.registry)
        except OSError as exc:
            raise StorageCalcError(f"cannot serve metrics on {address}:{port}: {exc}") from exc
