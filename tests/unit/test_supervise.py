"""The supervisor's contract (``peakwatch.supervise``): restart with a bounded, doubling backoff that a
clean unit of work resets; stop during a backoff ends the task; cancellation propagates. The backoff's
sleeps are recorded instead of waited."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from peakwatch.supervise import Supervisor


async def test_crashes_restart_with_a_doubling_bounded_backoff_reset_by_a_clean_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry, initial_s=1.0, max_s=4.0)
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds: float) -> None:  # the backoff, without waiting it
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 5:  # a clean unit of work, then a new failure
            supervisor.ok("loop")
        if runs < 7:
            raise RuntimeError(f"crash {runs}")

    await supervisor.run("loop", body)
    # crashes 1..4: 1, 2, 4, 4 s (doubling, bounded at 4); run 5 worked, so crash 5 waits 1 s again,
    # then crash 6 waits 2 s; run 7 returns
    assert waits == [1.0, 2.0, 4.0, 4.0, 1.0, 2.0]
    state = supervisor.state("loop")
    assert state.crashes == 6
    assert registry.get_sample_value("peakwatch_task_crashes_total", {"task": "loop"}) == 6
    assert state.last_error == "RuntimeError: crash 6"  # no clean pass after the last crash
    assert registry.get_sample_value("peakwatch_task_degraded", {"task": "loop"}) == 1
    crashed = [r for r in caplog.records if "background task loop crashed" in r.getMessage()]
    assert len(crashed) == 6
    assert all(r.exc_info is not None for r in crashed)
    supervisor.ok("loop")
    assert state.describe() == "running (recovered after 6 crash(es))"
    assert registry.get_sample_value("peakwatch_task_degraded", {"task": "loop"}) == 0


async def test_a_stop_during_the_backoff_ends_the_task_and_cancellation_propagates() -> None:
    supervisor = Supervisor(initial_s=60.0)
    stop = asyncio.Event()

    async def crash() -> None:
        raise ValueError("bad row")

    task = asyncio.create_task(supervisor.run("loop", crash, stop=stop))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    state = supervisor.state("loop")
    assert (state.retry_in_s, state.ok) == (60.0, False)
    assert state.describe() == "crashed 1 time(s), last: ValueError: bad row, restarting in 60 s"
    stop.set()
    await asyncio.wait_for(task, 5)  # not the 60 s backoff

    forever = asyncio.Event()
    task = asyncio.create_task(supervisor.run("other", forever.wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.state("other").crashes == 0


def test_problems_are_shown_counted_and_cleared() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor(registry)
    for n in range(5):
        supervisor.problem("accountant", f"request {n}", "ValueError: inf")
    state = supervisor.state("accountant")
    assert not state.ok
    assert state.describe() == (
        "request 0 failing (retried): ValueError: inf; request 1 failing (retried): ValueError: inf; "
        "request 2 failing (retried): ValueError: inf; 2 more failing (the log names them)"
    )
    assert registry.get_sample_value("peakwatch_task_failures_total", {"task": "accountant"}) == 5
    for n in range(4):
        supervisor.problem("accountant", f"request {n}", None)
    assert state.describe() == "request 4 failing (retried): ValueError: inf"
    supervisor.clear_problems("accountant")  # a hand-over: the new owner retries them
    assert state.ok
    assert state.describe() == "running"
    assert registry.get_sample_value("peakwatch_task_degraded", {"task": "accountant"}) == 0
