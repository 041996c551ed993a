"""`storage-calc schedule`: driven in a thread with --run-now, and once as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from structlog.testing import capture_logs

from storage_calc import scheduler
from storage_calc.config import DEFAULT_CRON, DEFAULT_TIMEZONE, Settings
from storage_calc.errors import ConfigError
from storage_calc.sources.listing import S3Client
from tests.conftest import read_events

FAR_AWAY = "0 0 1 1 *"


def test_the_default_is_nightly_at_two_utc() -> None:
    trigger = scheduler.cron_trigger(DEFAULT_CRON, DEFAULT_TIMEZONE)
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def test_the_cron_is_read_in_its_time_zone() -> None:
    trigger = scheduler.cron_trigger("30 1 * * *", "Europe/London")
    now = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 7, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone"), [("0 2 * *", "UTC"), ("61 2 * * *", "UTC"), ("0 2 * * *", "Mars/Base")]
)
def test_a_bad_cron_or_zone_is_a_config_error(cron: str, zone: str) -> None:
    with pytest.raises(ConfigError):
        scheduler.cron_trigger(cron, zone)


def build(settings: Settings, s3: S3Client, stop: threading.Event) -> Any:
    trigger = scheduler.cron_trigger(FAR_AWAY, "UTC")
    return scheduler.build_scheduler(settings, s3, trigger, None, True, stop)


def test_one_job_never_two_at_once(settings: Settings, s3: S3Client) -> None:
    job = build(settings, s3, threading.Event()).get_job(scheduler.JOB_ID)
    assert job.max_instances == 1


def missed(settings: Settings, s3: S3Client, stop: threading.Event, late: timedelta) -> Any:
    """A scheduler whose fires, once a minute for half an hour, all came while it was down,
    the last of them `late` ago."""
    now = datetime.now(UTC)
    end = now - late
    trigger = CronTrigger(minute="*", start_date=end - timedelta(minutes=30), end_date=end)
    sched = scheduler.build_scheduler(settings, s3, trigger, None, False, stop)
    sched.modify_job(scheduler.JOB_ID, next_run_time=end - timedelta(minutes=30))
    return sched


def test_fires_missed_within_the_grace_are_coalesced_into_one_run(
    register: Callable[..., None], settings: Settings, s3: S3Client, conn: Any
) -> None:
    register("2/5/a")
    stop = threading.Event()
    sched = missed(settings, s3, stop, timedelta(minutes=5))
    logs = serve_until(sched, stop, lambda logs: "run_finished" in events(logs))
    assert events(logs).count("run_finished") == 1
    assert "scheduled_run_missed" not in events(logs)
    assert conn.execute("SELECT outcome FROM storage_calc.runs").fetchall() == [("done",)]


def test_fires_missed_by_more_than_the_grace_are_logged_and_not_run(
    register: Callable[..., None], settings: Settings, s3: S3Client, conn: Any
) -> None:
    register("2/5/a")
    stop = threading.Event()
    sched = missed(settings, s3, stop, timedelta(hours=2))
    logs = serve_until(sched, stop, lambda logs: "scheduled_run_missed" in events(logs))
    assert "run_finished" not in events(logs)
    assert conn.execute("SELECT count(*) FROM storage_calc.runs").fetchone() == (0,)


def serve_until(
    sched: Any, stop: threading.Event, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Serves in a thread until `done(logs)`, then stops and returns the logs."""
    with capture_logs() as logs:
        thread = threading.Thread(target=scheduler.serve, args=(sched, stop))
        thread.start()
        deadline = time.monotonic() + 30
        while not done(logs) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    return logs


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs]


def test_run_now_fires_once_then_waits_for_the_next_fire(
    register: Callable[..., None], settings: Settings, s3: S3Client, conn: Any
) -> None:
    register("2/5/a")
    stop = threading.Event()
    before = datetime.now(UTC)
    logs = serve_until(
        build(settings, s3, stop), stop,
        lambda logs: "next_run_scheduled" in events(logs)[2:],
    )  # fmt: skip
    after = datetime.now(UTC)
    assert [e for e in events(logs) if e != "customer_calculated"] == [
        "schedule_started", "next_run_scheduled", "run_finished", "next_run_scheduled",
        "schedule_stopped",
    ]  # fmt: skip
    # The next New Year after the run, whichever year the run began and ended in.
    far_away = scheduler.cron_trigger(FAR_AWAY, "UTC")
    assert datetime.fromisoformat(logs[-2]["next_run"]) in {
        far_away.get_next_fire_time(None, moment) for moment in (before, after)
    }
    assert conn.execute("SELECT outcome FROM storage_calc.runs").fetchall() == [("done",)]


def test_a_failed_run_is_logged_and_the_schedule_goes_on(settings: Settings, s3: S3Client) -> None:
    stop = threading.Event()
    unreachable = replace(settings, database_url="postgresql://nobody@127.0.0.1:1/none")
    sched = build(unreachable, s3, stop)
    logs = serve_until(sched, stop, lambda logs: "scheduled_run_failed" in events(logs))
    failure = next(e for e in logs if e["event"] == "scheduled_run_failed")
    assert failure["error"].startswith("cannot connect to the database")
    assert events(logs)[-2:] == ["next_run_scheduled", "schedule_stopped"]


def test_sigterm_stops_the_schedule_process_cleanly(
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    process = spawn("schedule", "--cron", FAR_AWAY, "--run-now")
    read_events(process, lambda events: events.count("next_run_scheduled") == 2)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=10)  # the next fire is months away
    assert process.returncode == 0
    assert [json.loads(line)["event"] for line in rest.splitlines()][-2:] == [
        "stop_requested",
        "schedule_stopped",
    ]


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_stop_during_a_run_ends_the_schedule_once_the_run_ends(
    settings: Settings, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    steps: list[str] = []
    shutting_down: list[bool] = []

    def holds_the_job_store(name: str) -> bool:
        """Whether the thread `name` holds the scheduler's job store lock (its repr names the
        owner)."""
        owner = next((t.ident for t in threading.enumerate() if t.name == name), None)
        return owner is not None and f"owner={owner} " in repr(built._jobstores_lock)

    def fire(*_: Any) -> None:
        stop.set()
        # The stop thread shuts the scheduler down and, holding its job store's lock, waits
        # for this run: the run's end must not ask the store for the next fire.
        shutting_down.append(wait_for(lambda: holds_the_job_store("schedule-stop")))
        # The scheduler's loop has seen the stop and ended before this run does.
        wait_for(lambda: "loop ended" in steps)
        wait_for(lambda: "schedule ended" in steps, seconds=0.5)
        steps.append("run ended")

    def loop_sees_the_stop(_: Any) -> None:
        """The scheduler's loop, dispatching the run it started, goes on once stopped."""
        wait_for(lambda: built.state == STATE_STOPPED)

    def served() -> None:
        scheduler.serve(built, stop)
        steps.append("schedule ended")

    monkeypatch.setattr(scheduler, "fire", fire)
    trigger = scheduler.cron_trigger(DEFAULT_CRON, DEFAULT_TIMEZONE)
    built = scheduler.build_scheduler(settings, s3, trigger, None, True, stop)
    built.add_listener(loop_sees_the_stop, EVENT_JOB_SUBMITTED)
    start = built.start

    def started() -> None:
        start()
        steps.append("loop ended")

    monkeypatch.setattr(built, "start", started)
    serving = threading.Thread(target=served, daemon=True)
    serving.start()
    serving.join(timeout=20)
    assert not serving.is_alive()
    assert steps == ["loop ended", "run ended", "schedule ended"]
    assert shutting_down == [True]


def test_a_stop_before_the_schedule_has_started_ends_it_once_started(
    settings: Settings, s3: S3Client
) -> None:
    stop = threading.Event()
    stop.set()  # SIGTERM while the process was still setting up
    trigger = scheduler.cron_trigger(FAR_AWAY, "UTC")
    built = scheduler.build_scheduler(settings, s3, trigger, None, False, stop)
    with capture_logs() as logs:
        serving = threading.Thread(target=scheduler.serve, args=(built, stop), daemon=True)
        serving.start()
        serving.join(timeout=20)
        alive = serving.is_alive()
        if alive:
            built.shutdown(wait=False)  # let the thread end after the test
    assert not alive
    assert events(logs)[-1] == "schedule_stopped"
