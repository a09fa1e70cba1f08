"""Where a bench's CPU went: per process role (pipeline, PostgreSQL by kind of process, mosquitto,
publishers) and for the whole machine, between two snapshots; and a description of the machine.

On a shared 2-core machine a figure means little without these: the roles' CPU says what limits the
run, and the rest of the machine's says how much others took meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.broker import BenchBroker, mosquitto_version
from bench.children import Child
from bench.database import Database

BUSY_FIELDS = ("user", "system", "nice", "softirq", "irq")
"""The machine's CPU time fields that count as busy (idle and iowait do not)."""


def roles(
    pipeline: Child, publishers: list[Child], broker: BenchBroker, db: Database
) -> dict[str, list[int]]:
    """The processes of a bench by role (PostgreSQL's are read again before the second snapshot: it
    starts backends as clients connect)."""
    return {
        "pipeline": [pipeline.proc.pid],
        "publishers": [p.proc.pid for p in publishers],
        "mosquitto": [broker.pid] if broker.pid else [],
        "postgres": db.server_pids(),
    }


@dataclass(frozen=True)
class Snapshot:
    processes: dict[int, tuple[str, float]]
    """pid -> (role, CPU seconds so far)."""
    wall: float
    """``time.monotonic()``."""
    machine: Any
    """``psutil.cpu_times()``: the machine's CPU seconds so far, by field."""


def snapshot(pids: dict[str, list[int]]) -> Snapshot:
    return Snapshot(cpu_seconds(pids), time.monotonic(), psutil.cpu_times())


@dataclass(frozen=True)
class CpuUse:
    """CPU spent between two snapshots."""

    by_role: dict[str, float]
    """Seconds per role; ``postgres`` is the sum of its ``postgres/*``."""
    busy_s: float
    """The whole machine's busy CPU seconds."""
    core_s: float
    """Wall seconds per core, from the machine's own counters."""
    wall_s: float

    @property
    def other_s(self) -> float:
        """Busy seconds no bench process spent: what the rest of the machine took."""
        return self.busy_s - sum(seconds for role, seconds in self.by_role.items() if "/" not in role)


def cpu_between(before: Snapshot, after: Snapshot) -> CpuUse:
    busy = sum(getattr(after.machine, f) - getattr(before.machine, f) for f in BUSY_FIELDS)
    core_s = (sum(after.machine) - sum(before.machine)) / (psutil.cpu_count() or 1)
    return CpuUse(cpu_used(before.processes, after.processes), busy, core_s, after.wall - before.wall)


def cpu_seconds(pids: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for role, role_pids in pids.items():
        for pid in role_pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                times = proc.cpu_times()
                out[pid] = (_sub_role(role, proc), times.user + times.system)
    return out


def _sub_role(role: str, proc: Any) -> str:
    """``postgres`` processes by what their title says: the backends writing for peakwatch
    (``postgres/backend``), autovacuum, WAL writer, checkpointer ..."""
    if role != "postgres":
        return role
    title = " ".join(proc.cmdline())
    if not title.startswith("postgres: "):
        return "postgres/postmaster"
    kind = title.removeprefix("postgres: ").split()
    if kind and kind[0] in ("autovacuum", "walwriter", "checkpointer", "background", "TimescaleDB"):
        return f"postgres/{kind[0].lower()}"
    if "(" in title:  # "user database host(port) state": a client connection
        return "postgres/backend"
    return "postgres/other"


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per role between the two snapshots; ``postgres`` is the sum of its ``postgres/*``."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent = seconds - before.get(pid, (role, 0.0))[1]
        used[role] = used.get(role, 0.0) + spent
        if role.startswith("postgres/"):
            used["postgres"] = used.get("postgres", 0.0) + spent
    return used


def describe_machine() -> dict[str, Any]:
    """What a result file says about the machine it was measured on."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return {
        "cpu_model": model,
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mosquitto": mosquitto_version(exe),
    }
