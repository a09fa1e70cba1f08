"""Background tasks never die silently (issue 15): the accountant in a running stack, against a real
PostgreSQL, with its own API answering /healthz and /metrics over HTTP.

Two sites, ``bad`` and ``good``, each with one stored minute (so the processor's restart restores a
committed frontier and the accountant may restate it). A fault raises inside the accountant's work
for ``bad`` only: the stand-in for one site's poisoned data (issue 15 found +/-Infinity in the ledger
of one meter; before this change the task died and every other site's requests stayed pending, with
nothing logged). A second fault crashes the accountant's loop itself, outside any one request.
Last, the notifier's reconciliation loop: a round that raises (before, the exception ended the
notifier, and ``peakwatch up`` with it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cli.stack import Stack, running_stack
from notifier.service import NOTIFIER_TASK, Notifier
from peakwatch.config import Registry, Settings
from peakwatch.domain.kpis import minute_components, window_kpis
from peakwatch.domain.models import ProcessedBatch, RestatementReason
from peakwatch.store import Store, restate
from peakwatch.store.inputs import InputsStore
from peakwatch.store.records import RestatementRequest
from peakwatch.supervise import Supervisor
from processor.windows import site_inputs
from tests.fixtures.receivers import HttpReceiver
from tests.integration.test_notifier import T0, alert, change
from tests.integration.test_notifier_races import once_before, webhook
from tests.support import eventually, free_port

pytestmark = pytest.mark.integration

MIN = 60_000
W0 = 1_767_196_800_000  # 2026-01-01T00:00:00+08:00
TASK = "processor-accountant"

REGISTRY = Registry.from_text(
    """
sites:
  - id: bad
    name: Poisoned
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
  - id: good
    name: Healthy
    kind: data_centre
    meters:
      - {id: facility, carrier: electricity, role: facility_total, unit: kWh}
      - {id: it, carrier: electricity, role: it_load, unit: kWh}
"""
)


class Poison:
    """Raises inside the accountant's restatement of site ``bad`` while ``on``."""

    def __init__(self) -> None:
        self.on = True
        self.raised = 0
        self._ledger = restate.ledger

    async def ledger(self, conn: Any, site_id: str, a: int, b: int) -> Any:
        if self.on and site_id == "bad":
            self.raised += 1
            raise RuntimeError("poisoned ledger of site bad")
        return await self._ledger(conn, site_id, a, b)


@pytest.fixture
async def stack(store: Store, database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    await store.sync_registry(REGISTRY)
    windows = []
    for site_id in ("bad", "good"):
        site = REGISTRY.sites[site_id]
        components = minute_components(REGISTRY.site_meters(site_id), {"facility": 9.0, "it": 6.0})
        inputs = site_inputs(REGISTRY, REGISTRY.factors, site)
        windows.append(window_kpis(site_id, W0, W0 + MIN, components, inputs))
    await store.write(ProcessedBatch(kpi_windows=windows))
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        api_port=free_port(),
        window_ms=MIN,
        allowed_lateness_ms=10_000,
        demo=False,
    )
    async with running_stack(settings, REGISTRY, collector=False, broker=False, notifier=False) as running:
        yield running


async def queue(store: Store, site_id: str | None) -> int:
    return await store.inputs.request_restatement(
        site_id, None, W0, W0 + MIN, RestatementReason.MANUAL, "test"
    )


async def request(store: Store, request_id: int) -> RestatementRequest:
    [found] = [r for r in await store.inputs.list_restatements(100) if r.id == request_id]
    return found


async def task_health(api: httpx.AsyncClient) -> dict[str, Any]:
    answer = (await api.get("/healthz")).json()
    [task] = [c for c in answer["components"] if c["name"] == f"task {TASK}"]
    return {"status": answer["status"], **task}


def metric(text: str, name: str) -> float:
    line = f'{name}{{task="{TASK}"}} '
    [value] = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(value)


async def test_one_sites_failing_restatement_is_logged_counted_shown_retried_and_blocks_no_other_site(
    store: Store, stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison = Poison()
    monkeypatch.setattr(restate, "ledger", poison.ledger)
    caplog.set_level(logging.ERROR)
    bad = await queue(store, "bad")  # older: the pass meets it first
    good = await queue(store, "good")

    # the other site's request is done although the older one raises at every attempt
    done = await eventually(lambda: _done(store, good), "the good site's request done", timeout_s=15)
    assert done.error is None
    failing = await eventually(lambda: _failed(store, bad), "the bad site's failure recorded", timeout_s=15)
    assert failing.done_ms is None
    assert failing.error == "RuntimeError: poisoned ledger of site bad"
    # logged with its traceback, naming the request
    [logged, *_] = [r for r in caplog.records if f"restatement request {bad} (bad" in r.getMessage()]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None
    async with httpx.AsyncClient(base_url=stack.api_url) as api:
        health = await task_health(api)
        assert health["status"] == "degraded"
        assert health["ok"] is False
        assert f"restatement request {bad} (bad, manual) failing (retried)" in health["detail"]
        assert "RuntimeError: poisoned ledger of site bad" in health["detail"]
        assert metric((await api.get("/metrics")).text, "peakwatch_task_failures_total") >= 1
        assert metric((await api.get("/metrics")).text, "peakwatch_task_degraded") == 1
        # retried with backoff: once the data is fixed, the request is done and the task healthy again
        await eventually(lambda: poison.raised >= 2, "a second attempt", timeout_s=15)
        poison.on = False
        await eventually(lambda: _done(store, bad), "the bad site's request done once fixed", timeout_s=15)
        recovered = await eventually(lambda: _healthy(api), "the accountant healthy again", timeout_s=10)
        assert recovered["detail"] == "running"
        assert metric((await api.get("/metrics")).text, "peakwatch_task_degraded") == 0


async def test_a_crash_of_the_accountants_loop_is_logged_counted_shown_and_restarted(
    store: Store, stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    crashes = Crashes(InputsStore.pending_restatements, times=2)
    monkeypatch.setattr(InputsStore, "pending_restatements", crashes.method())
    async with httpx.AsyncClient(base_url=stack.api_url) as api:
        degraded = await eventually(lambda: _crashed(api), "the crash shown in /healthz", timeout_s=10)
        assert degraded["status"] == "degraded"
        assert "last: RuntimeError: the accountant's pass broke" in degraded["detail"]
        assert metric((await api.get("/metrics")).text, "peakwatch_task_crashes_total") >= 1
        crashed = [r for r in caplog.records if f"background task {TASK} crashed" in r.getMessage()]
        assert crashed
        assert crashed[0].exc_info is not None
        # restarted (backoff 1 s, then 2 s): the queue is worked again and the task is healthy
        request_id = await queue(store, "good")
        await eventually(lambda: _done(store, request_id), "a request done after the restarts", timeout_s=20)
        assert crashes.raised == 2
        recovered = await eventually(lambda: _healthy(api), "the accountant healthy again", timeout_s=10)
        assert recovered["detail"] == "running (recovered after 2 crash(es))"
        assert metric((await api.get("/metrics")).text, "peakwatch_task_crashes_total") == 2


class Crashes:
    """The first ``times`` calls raise (a bug outside any one request); then the real method."""

    def __init__(self, real: Callable[..., Awaitable[Any]], *, times: int) -> None:
        self.real = real
        self.times = times
        self.raised = 0

    def method(self) -> Callable[..., Awaitable[Any]]:
        async def call(inputs: InputsStore, *args: Any, **kwargs: Any) -> Any:
            if self.raised < self.times:
                self.raised += 1
                raise RuntimeError("the accountant's pass broke")
            return await self.real(inputs, *args, **kwargs)

        return call


async def _done(store: Store, request_id: int) -> RestatementRequest | None:
    found = await request(store, request_id)
    return found if found.done_ms is not None else None


async def _failed(store: Store, request_id: int) -> RestatementRequest | None:
    found = await request(store, request_id)
    return found if found.attempts >= 1 else None


async def _healthy(api: httpx.AsyncClient) -> dict[str, Any] | None:
    health = await task_health(api)
    return health if health["ok"] else None


async def _crashed(api: httpx.AsyncClient) -> dict[str, Any] | None:
    health = await task_health(api)
    return health if not health["ok"] and "crashed" in health["detail"] else None


async def test_a_notifier_round_that_raises_is_logged_counted_and_the_loop_recovers_and_sends(
    store: Store, http_receiver: HttpReceiver, receiver_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    metrics = CollectorRegistry()
    notifier = Notifier(
        store, webhook(http_receiver.url_for(receiver_path)), poll_ms=60_000, supervisor=Supervisor(metrics)
    )

    async def poisoned() -> None:
        raise ValueError("an alert row this version cannot read")

    once_before(store.notify, "routing_alerts", poisoned)  # the first round raises
    await alert(store, change("pue", "dc-1", "firing", T0))
    task = asyncio.create_task(notifier.run())
    try:
        hook = await http_receiver.next(receiver_path)  # restarted after the backoff (1 s): it sends
        assert hook.json()["commonLabels"]["alertname"] == "pue"
        assert not task.done()
        state = notifier.supervisor.state(NOTIFIER_TASK)
        assert state.crashes == 1
        assert metrics.get_sample_value("peakwatch_task_crashes_total", {"task": NOTIFIER_TASK}) == 1
        await eventually(lambda: state.ok, "the notifier healthy after a clean round", timeout_s=10)
        assert state.describe() == "running (recovered after 1 crash(es))"
        [logged] = [r for r in caplog.records if f"background task {NOTIFIER_TASK} crashed" in r.getMessage()]
        assert logged.exc_info is not None
        assert "an alert row this version cannot read" in str(logged.exc_info[1])
    finally:
        notifier.stop()
        await task
    assert len(http_receiver.requests(receiver_path)) == 1


async def test_a_request_for_every_site_restates_the_others_and_fails_naming_the_bad_one(
    store: Store, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = Poison()
    calls: list[str] = []
    poisoned = poison.ledger

    async def ledger(conn: Any, site_id: str, a: int, b: int) -> Any:
        calls.append(site_id)
        return await poisoned(conn, site_id, a, b)

    monkeypatch.setattr(restate, "ledger", ledger)
    every = await queue(store, None)
    failing = await eventually(lambda: _failed(store, every), "the failure recorded", timeout_s=15)
    assert failing.error == "SitesFailedError: site bad: RuntimeError: poisoned ledger of site bad"
    # retried for the bad site only (a factor revision restates a whole history: not again for good)
    await eventually(lambda: poison.raised >= 2, "a second attempt", timeout_s=15)
    assert calls.count("good") == 1
    # the good site was restated all the same: its stored minute had no ledger behind it, so it is
    # rebuilt (empty) and revised; the bad site's minute is untouched
    [good] = await store.kpi_series("good", W0, W0 + MIN)
    [bad] = await store.kpi_series("bad", W0, W0 + MIN)
    assert (good.revision, bad.revision) == (1, 0)
