"""Resident memory of a bench's processes by role, sampled while it runs (``bench/machine.py`` says
where the CPU went; this says how much memory each role held, at its peak and over time).

Why sampled rather than read once: the pipeline's memory grows with the meters it has seen and
shrinks as the bus drains, so the figure that matters (the peak) is only seen by watching. Roles are
found afresh on every sample, because ``bench.e2e.run_mode`` spawns the pipeline, the publishers and
mosquitto itself, and PostgreSQL starts and ends backends as clients come and go.

PostgreSQL is one role however many processes it runs: the sum of their *proportional* set sizes
(PSS), because each backend maps the same shared buffers and the sum of their RSS would count those
once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.database import Database

ROLE_MARKERS = (("pipeline", "bench.pipeline"), ("publishers", "bench.publisher"), ("mosquitto", "mosquitto"))
"""A child process's role, by what its command line contains."""


@dataclass
class MemorySampler:
    """Samples every ``interval_s`` between ``start`` and ``stop``: bytes per role (publishers summed)."""

    db: Database
    interval_s: float = 1.0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            sample = await asyncio.to_thread(self.sample_once)
            self.samples.append((time.monotonic() - t0, sample))
            await asyncio.sleep(self.interval_s)

    def sample_once(self) -> dict[str, int]:
        """Bytes per role now: RSS of our children by role, PSS summed over PostgreSQL's processes."""
        out: dict[str, int] = {}
        postgres = set(self.db.server_pids())
        for proc in psutil.Process().children(recursive=True):
            if proc.pid in postgres:
                continue
            with contextlib.suppress(psutil.Error):
                role = _role(" ".join(proc.cmdline()))
                if role is not None:
                    out[role] = out.get(role, 0) + int(proc.memory_info().rss)
        if postgres:
            out["postgres"] = sum(_pss(pid) for pid in postgres)
        return out

    def peak(self) -> dict[str, int]:
        """The largest sample of each role."""
        peaks: dict[str, int] = {}
        for _, sample in self.samples:
            for role, size in sample.items():
                peaks[role] = max(peaks.get(role, 0), size)
        return peaks

    def steady(self, last_fraction: float = 0.5) -> dict[str, int]:
        """Median per role over the last part of the run (a paced run's steady state)."""
        tail = self.samples[int(len(self.samples) * (1 - last_fraction)) :]
        roles = {role for _, sample in tail for role in sample}
        return {role: _median([s[role] for _, s in tail if role in s]) for role in roles}

    def series(self) -> list[list[Any]]:
        """``[seconds, {role: MiB}]`` per sample, for the result file."""
        return [[round(t, 1), {r: round(b / 2**20, 1) for r, b in s.items()}] for t, s in self.samples]


def _role(cmdline: str) -> str | None:
    for role, marker in ROLE_MARKERS:
        if marker in cmdline:
            return role
    return None


def _pss(pid: int) -> int:
    """Proportional set size (RSS when smaps cannot be read)."""
    try:
        proc = psutil.Process(pid)
        try:
            return int(proc.memory_full_info().pss)
        except (psutil.AccessDenied, AttributeError):
            return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0
