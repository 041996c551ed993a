"""`storage-calc schedule`: a long-running process firing the calculator on a cron expression.

APScheduler's `max_instances` only holds within this process; the per-customer advisory locks
are what keep a scheduled run, a manual rerun and a second replica apart.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
)
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from storage_calc import calculator, quota
from storage_calc.config import Settings
from storage_calc.errors import ConfigError, StorageCalcError
from storage_calc.metrics import ScheduleMetrics
from storage_calc.model import Scope, Shard
from storage_calc.progress import RunProgress
from storage_calc.sources.listing import S3Client

log = structlog.get_logger("storage_calc")

# A fire delayed by less than this (a busy host, a clock jump) still runs; later ones are
# dropped and the next fire is waited for.
MISFIRE_GRACE_SECONDS = 3600
JOB_ID = "storage-calc-run"


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a five-field crontab expression in `timezone`."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{timezone!r} is not a known time zone") from exc
    try:
        return CronTrigger.from_crontab(expression, zone)
    except ValueError as exc:
        raise ConfigError(f"{expression!r} is not a crontab expression: {exc}") from exc


def fire(
    settings: Settings,
    s3: S3Client,
    shard: Shard | None,
    stop: threading.Event,
    metrics: ScheduleMetrics | None,
) -> None:
    """One scheduled run; its failures are logged, never raised into APScheduler, which would
    only log them itself."""
    progress = RunProgress()
    if metrics is not None:
        metrics.watch(progress)
    try:
        report = calculator.run(settings, s3, Scope(), shard, stop=stop, progress=progress)
    except StorageCalcError as exc:
        log.error("scheduled_run_failed", error=str(exc))
        return
    quota.warn(settings, report)
    if metrics is not None:
        metrics.observe(report)


def build_scheduler(
    settings: Settings,
    s3: S3Client,
    trigger: CronTrigger,
    shard: Shard | None,
    run_now: bool,
    stop: threading.Event,
    metrics: ScheduleMetrics | None = None,
) -> BlockingScheduler:
    """A scheduler with one job: never two instances at once, missed fires coalesced. Each run
    is observed by `metrics`, if given."""
    scheduler = BlockingScheduler(timezone=trigger.timezone)
    first: dict[str, Any] = {"next_run_time": datetime.now(trigger.timezone)} if run_now else {}
    scheduler.add_job(
        fire,
        trigger,
        args=(settings, s3, shard, stop, metrics),
        id=JOB_ID,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        **first,
    )

    def after_fire(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("scheduled_run_missed", scheduled=str(event.scheduled_run_time))
        elif event.exception is not None:
            log.error("scheduled_run_crashed", error=repr(event.exception))
        # Once stopping, `shutdown(wait=True)` holds the job store's lock while it waits for
        # this run: asking the store for the next fire would wait for that wait.
        if not stop.is_set():
            log_next_fire(scheduler, metrics)

    scheduler.add_listener(after_fire, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    scheduler.add_listener(lambda _: log_next_fire(scheduler, metrics), EVENT_SCHEDULER_STARTED)
    return scheduler


def log_next_fire(scheduler: BlockingScheduler, metrics: ScheduleMetrics | None) -> None:
    job = scheduler.get_job(JOB_ID)
    if job is not None and job.next_run_time is not None:
        log.info("next_run_scheduled", next_run=job.next_run_time.isoformat())
        if metrics is not None:
            metrics.next_run.set(job.next_run_time.timestamp())


def serve(scheduler: BlockingScheduler, stop: threading.Event) -> None:
    """Runs `scheduler` until `stop` is set, then waits for a run in progress to stop."""
    started = threading.Event()
    scheduler.add_listener(lambda _: started.set(), EVENT_SCHEDULER_STARTED)

    def shut_down() -> None:
        stop.wait()
        # A stop requested before the scheduler started (a SIGTERM during setup) stops it once
        # it has: shutting down a scheduler not yet started fails, and it would then run on.
        started.wait()
        scheduler.shutdown(wait=True)

    stopping = threading.Thread(target=shut_down, name="schedule-stop", daemon=True)
    stopping.start()
    log.info("schedule_started", trigger=str(scheduler.get_job(JOB_ID).trigger))
    scheduler.start()
    # The scheduler's loop may end as soon as `shutdown` marks it stopped, while the run in
    # progress goes on; `shutdown(wait=True)` returns once that run has ended.
    stopping.join()
    log.info("schedule_stopped")
