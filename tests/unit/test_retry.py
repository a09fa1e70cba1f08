"""peakwatch/retry.py: the one retry loop (its policy is its arguments)."""

from __future__ import annotations

import asyncio

import pytest

from peakwatch.errors import StoreError
from peakwatch.retry import retry, store_retryable


class Flaky:
    """Fails with ``errors`` in turn, then returns how many calls it took."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def transient() -> StoreError:
    return StoreError("connection lost", retryable=True)


async def test_retries_transient_failures_with_a_doubling_capped_delay() -> None:
    work = Flaky(transient(), transient(), transient(), transient())
    delays: list[float] = []
    result = await retry(
        work, initial_s=0.001, max_s=0.004, on_retry=lambda _exc, delay_s: delays.append(delay_s)
    )
    assert result == 5  # four failures, then the fifth call succeeds
    # 0.001, doubled 0.002, doubled 0.004 (= max_s), capped at 0.004
    assert delays == [0.001, 0.002, 0.004, 0.004]


async def test_a_failure_not_worth_retrying_propagates_at_once() -> None:
    work = Flaky(StoreError("constraint violated", retryable=False))
    with pytest.raises(StoreError, match="constraint violated"):
        await retry(work, initial_s=0.001, max_s=0.001)
    assert work.calls == 1
    other = Flaky(ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await retry(other, initial_s=0.001, max_s=0.001)
    assert other.calls == 1


async def test_attempts_bound_the_tries_and_the_last_failure_propagates() -> None:
    work = Flaky(transient(), transient(), StoreError("third", retryable=True), transient())
    with pytest.raises(StoreError, match="third"):
        await retry(work, initial_s=0.001, max_s=0.001, attempts=3)
    assert work.calls == 3
    with pytest.raises(ValueError, match="attempts"):
        await retry(work, initial_s=0.001, max_s=0.001, attempts=0)


async def test_a_stop_ends_the_retrying_and_cuts_the_wait_short() -> None:
    stop = asyncio.Event()
    work = Flaky(transient(), transient())

    def stop_now(_exc: Exception, _delay_s: float) -> None:
        stop.set()

    loop = asyncio.get_running_loop()
    started = loop.time()
    # the first failure sets stop; the 60 s wait ends at once and the second failure propagates
    with pytest.raises(StoreError):
        await retry(work, initial_s=60.0, max_s=60.0, stop=stop, on_retry=stop_now)
    assert work.calls == 2
    assert loop.time() - started < 5.0
    stop_first = Flaky(transient())
    with pytest.raises(StoreError):
        await retry(stop_first, initial_s=60.0, max_s=60.0, stop=stop)
    assert stop_first.calls == 1  # already stopped: no retry at all


async def test_a_custom_predicate_decides_what_is_transient() -> None:
    work = Flaky(TimeoutError(), TimeoutError())
    result = await retry(
        work, initial_s=0.001, max_s=0.001, retryable=lambda exc: isinstance(exc, TimeoutError)
    )
    assert result == 3


def test_store_retryable() -> None:
    assert store_retryable(transient())
    assert not store_retryable(StoreError("bad input", retryable=False))
    assert not store_retryable(RuntimeError("not the store"))
