"""The parent's side of the benches' child processes: the pipeline (``bench/pipeline.py``) and the
publishers (``bench/publisher.py``), each speaking JSON lines on stdout and taking lines on stdin.

Kept apart from ``bench/pipeline.py`` on purpose: that module *is* the system under test and imports
the whole stack; the parent only needs to spawn it and read what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Child:
    """A child process speaking JSON lines on stdout."""

    name: str
    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, name: str, *args: str) -> Child:
        """``python -m <args>`` with this interpreter."""
        return await cls.exec(name, sys.executable, "-m", *args)

    @classmethod
    async def exec(cls, name: str, *argv: str, env: dict[str, str] | None = None) -> Child:
        """Any program that writes JSON lines among others (bench.peer's Node-RED): the rest is skipped."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
            env=env,
        )
        child = cls(name, proc)
        child.reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            self.events.append(event)
            self.changed.set()
        self.changed.set()

    def last(self, kind: str) -> dict[str, Any] | None:
        found = [event for event in self.events[::-1] if event.get("ev") == kind][:1]
        return found[0] if found else None

    async def wait_for(self, kind: str, timeout_s: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                event = self.last(kind)
                if event is not None:
                    return event
                if self.proc.returncode is not None or (self.reader is not None and self.reader.done()):
                    raise RuntimeError(f"{self.name} exited (code {self.proc.returncode}) before {kind!r}")
                self.changed.clear()
                await self.changed.wait()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(line.encode() + b"\n")

    async def finish(self, timeout_s: float = 60) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.reader is not None:
            await self.reader


@contextlib.asynccontextmanager
async def children() -> AsyncIterator[list[Child]]:
    """The children spawned inside the block; any still running at its end (an error) is killed."""
    spawned: list[Child] = []
    try:
        yield spawned
    finally:
        for child in spawned:
            if child.proc.returncode is None:
                child.proc.kill()
                await child.proc.wait()


async def spawn_pipeline(
    spawned: list[Child],
    *,
    registry: Path,
    mqtt_url: str,
    database_url: str,
    lateness_ms: int,
    bus: str,
    flags: Sequence[str] = (),
) -> Child:
    """``bench.pipeline`` on the registry file, the broker, the database and the bus given."""
    pipeline = await Child.spawn(
        "pipeline",
        "bench.pipeline",
        "--config",
        str(registry),
        "--mqtt-url",
        mqtt_url,
        "--database-url",
        database_url,
        "--allowed-lateness-ms",
        str(lateness_ms),
        *flags,
        "--bus",
        bus,
    )
    spawned.append(pipeline)
    return pipeline


@dataclass(frozen=True)
class Load:
    """What the publishers send between them: the synthetic fleet's readings from ``start_ms`` on."""

    mqtt_url: str
    sites: int
    meters: int
    steps: int
    """Readings per meter."""
    start_ms: int
    options: tuple[str, ...] = ()
    """Further ``bench.publisher`` options, the same for every publisher."""


async def spawn_publishers(spawned: list[Child], load: Load, count: int) -> list[Child]:
    """``count`` publishers, each sending every ``count``-th site of the load (``--part i/count``)."""
    publishers = []
    for part in range(count):
        pub = await Child.spawn(
            f"publisher {part}",
            "bench.publisher",
            "--url",
            load.mqtt_url,
            "--sites",
            str(load.sites),
            "--meters",
            str(load.meters),
            "--steps",
            str(load.steps),
            "--start-ms",
            str(load.start_ms),
            "--part",
            f"{part}/{count}",
            *load.options,
        )
        spawned.append(pub)
        publishers.append(pub)
    return publishers


async def stop_all(pipeline: Child, publishers: list[Child]) -> None:
    """Stop the pipeline (it drains its bus first), then let the publishers exit (stdin closed)."""
    pipeline.send("stop")
    await pipeline.finish()
    for pub in publishers:
        await pub.finish()
