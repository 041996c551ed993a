"""A stop requested by a signal while the run waits for a listing."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from storage_calc import calculator
from storage_calc.config import Settings
from storage_calc.model import Outcome
from storage_calc.sources.listing import S3Client
from storage_calc.stopping import stop_on_signals
from tests.conftest import STORAGE


def figures(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute('SELECT * FROM "CustomerStorage" ORDER BY 1, 2').fetchall()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_taken_by_a_listing_thread_is_seen_while_the_listing_is_held(
    register: Callable[..., None], put: Callable[..., None], settings: Settings, s3: S3Client,
    conn: psycopg.Connection[Any], stop_signal: signal.Signals,
) -> None:  # fmt: skip
    """A signal sent to the process may be taken by any of its threads; CPython runs its
    handler on the main thread, between two bytecodes. Here it is sent to the very thread whose
    request is held, as the kernel may choose to: the stop must be requested while the request
    is still held, not once the listing the main thread waits for has ended."""
    register("2/5/a")
    put(STORAGE, {"2/5/a": 10})
    assert calculator.run(settings, s3).outcome == "done"
    before = figures(conn)
    put(STORAGE, {"2/5/a/more": 5})

    held, release = threading.Event(), threading.Event()
    listers: list[int] = []

    def hold(params: dict[str, Any], **_: Any) -> None:
        if params["Prefix"].startswith("2/5/"):
            listers.append(threading.get_ident())
            held.set()
            release.wait(30)

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", hold)
    seen: list[bool] = []
    with stop_on_signals() as stop:

        def signal_the_lister() -> None:
            try:
                assert held.wait(30)
                signal.pthread_kill(listers[0], stop_signal)
                seen.append(stop.wait(10))
            finally:
                release.set()

        sender = threading.Thread(target=signal_the_lister)
        sender.start()
        report = calculator.run(settings, s3, stop=stop)
        sender.join(60)

    assert seen == [True], "the stop was seen only once the held listing had ended"
    assert report.interrupted
    ((customer,),) = [report.customers]
    assert customer.outcome is Outcome.FAILED, customer
    assert figures(conn) == before
