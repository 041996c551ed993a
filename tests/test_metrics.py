"""Prometheus metrics: the text a scrape or a push carries, parsed back and checked, a push to a
local HTTP receiver, and `schedule --metrics-port` served by a real process."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from click.testing import Result
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from storage_calc import calculator, metrics
from storage_calc.config import Settings
from storage_calc.model import RunReport, Scope, Shard
from storage_calc.progress import RunProgress
from storage_calc.sources.listing import S3Client
from tests.conftest import STORAGE, THUMBS, private_port
from tests.conftest import billable_row as row

Invoke = Callable[..., Result]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, labels) -> value of every sample of an exposition text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def report(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client
) -> RunReport:
    """A run over customer 2 (two assets, one orphan) after its figures were set wrong."""
    register("2/5/a", "2/5/b")
    put(STORAGE, {"2/5/a": 300, "2/5/b": 20, "2/5/gone": 7})
    put(THUMBS, {"2/5/a/open/100.jpg": 5})
    return calculator.run(settings, s3)


def test_a_run_gives_the_batch_job_gauges(report: RunReport) -> None:
    run_metrics = metrics.RunMetrics(CollectorRegistry())
    run_metrics.observe(report)
    found = samples(generate_latest(run_metrics.registry).decode())
    assert found == {
        ("storage_calc_last_success_timestamp_seconds", ()): report.finished.timestamp(),
        ("storage_calc_last_run_timestamp_seconds", ()): report.finished.timestamp(),
        ("storage_calc_last_run_success", ()): 1.0,
        ("storage_calc_last_run_duration_seconds", ()): report.duration_seconds,
        ("storage_calc_last_run_objects", ()): 4.0,
        ("storage_calc_last_run_bytes", ()): 332.0,
        ("storage_calc_last_run_customers", (("outcome", "computed"),)): 1.0,
        ("storage_calc_last_run_customers", (("outcome", "failed"),)): 0.0,
        ("storage_calc_last_run_customers", (("outcome", "skipped"),)): 0.0,
        ("storage_calc_last_run_orphan_bytes", ()): 7.0,
        ("storage_calc_last_run_drift_bytes", ()): 325.0,
    }


def test_no_metric_is_labelled_by_customer_or_asset(report: RunReport) -> None:
    run_metrics = metrics.ScheduleMetrics()
    run_metrics.observe(report)
    text = generate_latest(run_metrics.registry).decode()
    labels = {name for _, pairs in samples(text) for name, _ in pairs}
    assert labels == {"outcome"}


def billed(report: RunReport) -> RunReport:
    """`report` as if the run had also computed customer 2's billable bytes in two spaces."""
    rows = (
        row(2, 5, current_objects=2, current_bytes=300, noncurrent_versions=1,
            noncurrent_bytes=100, delete_markers=1, incomplete_uploads=1,
            incomplete_upload_bytes=7, billed_bytes=131_079),
        row(2, None, current_objects=1, current_bytes=5, billed_bytes=5),
    )  # fmt: skip
    customers = tuple(replace(c, billable=rows) for c in report.customers)
    return replace(report, customers=customers)


def test_a_run_with_billable_bytes_gives_their_totals_by_kind(report: RunReport) -> None:
    run_metrics = metrics.RunMetrics(CollectorRegistry())
    run_metrics.observe(billed(report))
    found = samples(generate_latest(run_metrics.registry).decode())
    assert {k: v for k, v in found.items() if "billable" in k[0]} == {
        ("storage_calc_last_run_billable_bytes", (("kind", "current"),)): 305.0,
        ("storage_calc_last_run_billable_bytes", (("kind", "noncurrent"),)): 100.0,
        ("storage_calc_last_run_billable_bytes", (("kind", "incomplete_upload"),)): 7.0,
        ("storage_calc_last_run_billable_bytes", (("kind", "billed"),)): 131_084.0,
        ("storage_calc_last_run_billable_objects", (("kind", "current"),)): 3.0,
        ("storage_calc_last_run_billable_objects", (("kind", "noncurrent"),)): 1.0,
        ("storage_calc_last_run_billable_objects", (("kind", "delete_marker"),)): 1.0,
        ("storage_calc_last_run_billable_objects", (("kind", "incomplete_upload"),)): 1.0,
    }


def test_billable_totals_are_labelled_by_kind_only(report: RunReport) -> None:
    run_metrics = metrics.ScheduleMetrics()
    run_metrics.observe(billed(report))
    text = generate_latest(run_metrics.registry).decode()
    assert {name for _, pairs in samples(text) for name, _ in pairs} == {"outcome", "kind"}


def test_a_failed_run_exports_no_last_success(
    register: Callable[..., None], settings: Settings, s3: S3Client, fail_listing: Any
) -> None:
    register("2/5/a")
    fail_listing("prefix=2%2F")
    report = calculator.run(settings, s3)
    run_metrics = metrics.RunMetrics(CollectorRegistry(), last_success=False)
    run_metrics.observe(report)
    found = samples(generate_latest(run_metrics.registry).decode())
    assert ("storage_calc_last_success_timestamp_seconds", ()) not in found
    assert found[("storage_calc_last_run_success", ())] == 0.0
    assert found[("storage_calc_last_run_customers", (("outcome", "failed"),))] == 1.0


def test_schedule_metrics_show_the_run_going_on_and_reset_after_it(report: RunReport) -> None:
    schedule_metrics = metrics.ScheduleMetrics()
    progress = RunProgress()
    schedule_metrics.watch(progress)
    progress.listed(1234)
    progress.customer_done()

    def current() -> tuple[float, float]:
        found = samples(generate_latest(schedule_metrics.registry).decode())
        return (
            found[("storage_calc_current_run_objects", ())],
            found[("storage_calc_current_run_customers_done", ())],
        )

    assert current() == (1234.0, 1.0)
    schedule_metrics.observe(report)
    assert current() == (0.0, 0.0)


@pytest.mark.parametrize(
    ("scope", "shard", "key"),
    [
        (Scope(), None, {"scope": "all"}),
        (Scope(), Shard(1, 4), {"scope": "all", "shard": "1/4"}),
        (Scope(customer=2, space=5), None, {"scope": "space"}),
    ],
)
def test_pushes_of_different_scopes_and_shards_are_kept_apart(
    report: RunReport, scope: Scope, shard: Shard | None, key: dict[str, str]
) -> None:
    run = RunReport(
        scope=scope, shard=shard, dry_run=False, started=report.started, finished=report.finished
    )
    assert metrics.grouping_key(run) == key


@dataclass
class Receiver:
    """A small HTTP server standing in for a Pushgateway: it records what it is sent."""

    url: str
    requests: list[tuple[str, str, str]] = field(default_factory=list)


@pytest.fixture
def pushgateway() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            receiver.requests.append((self.command, self.path, body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield receiver
    server.shutdown()
    server.server_close()


def test_run_pushes_its_metrics_to_the_pushgateway(
    register: Callable[..., None], put: Callable[..., None], invoke: Invoke, pushgateway: Receiver
) -> None:
    register("2/5/a")
    put(STORAGE, {"2/5/a": 300})
    result = invoke("run", "--pushgateway", pushgateway.url)
    assert result.exit_code == 0
    [(method, path, body)] = pushgateway.requests
    assert (method, path) == ("POST", "/metrics/job/storage-calc/scope/all")
    found = samples(body)
    assert found[("storage_calc_last_run_objects", ())] == 1.0
    assert found[("storage_calc_last_run_bytes", ())] == 300.0
    assert found[("storage_calc_last_success_timestamp_seconds", ())] > 0


def test_a_failed_push_is_logged_and_the_run_still_exits_0(
    register: Callable[..., None], invoke: Invoke
) -> None:
    register("2/5/a")
    result = invoke("run", "--pushgateway", f"http://127.0.0.1:{private_port()}")
    assert result.exit_code == 0
    assert '"event": "metrics_push_failed"' in result.stderr


def test_a_bad_pushgateway_url_is_one_line_and_exit_2(invoke: Invoke) -> None:
    result = invoke("run", "--pushgateway", "pushgateway 9091")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


def test_schedule_serves_metrics_of_its_runs(
    register: Callable[..., None],
    server_put: Callable[..., None],
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    register("2/5/a")
    server_put(STORAGE, {"2/5/a": 300})
    port = private_port()
    spawn("schedule", "--cron", "0 0 1 1 *", "--run-now", "--metrics-port", str(port))
    deadline = time.monotonic() + 30
    found: dict[Any, float] = {}
    next_run = ("storage_calc_next_run_timestamp_seconds", ())
    while found.get(next_run, 0) < time.time():  # set to next year once the run has ended
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                found = samples(answer.read().decode())
        except OSError:
            continue
    assert found[("storage_calc_runs_total", (("outcome", "done"),))] == 1.0
    assert found[("storage_calc_last_run_bytes", ())] == 300.0
    assert found[("storage_calc_last_success_timestamp_seconds", ())] <= time.time()


def test_schedule_serves_metrics_on_the_host_given(
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    port = private_port()
    spawn("schedule", "--cron", "0 0 1 1 *", "--metrics-port", str(port),
          "--metrics-host", "127.0.0.1")  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                assert "storage_calc_schedule_start_timestamp_seconds" in answer.read().decode()
                break
        except OSError:
            assert time.monotonic() < deadline, "the metrics were never served on 127.0.0.1"
            time.sleep(0.1)
    # Another loopback address reaches a server on 0.0.0.0, never one on 127.0.0.1 alone.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5)
