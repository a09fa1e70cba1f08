"""The PostgreSQL a bench writes to: embedded (durable unless ``fast``) or an external server, with a
fresh database per run so no bench reads another's rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]

from bench.broker import free_port
from peakwatch.embedded.postgres import EmbeddedPostgres


class Database:
    """Embedded PostgreSQL (durable unless ``fast``) or an external server; a fresh database per mode."""

    def __init__(self, workdir: Path, url: str | None, *, fast: bool, timescale: bool = True) -> None:
        self.external_url = url
        self.embedded: EmbeddedPostgres | None = None
        if url is None:
            self.embedded = EmbeddedPostgres(
                workdir / "postgres",
                port=free_port(),
                durable=not fast,
                timescale=None if timescale else False,  # None: when the wheel has it
            )
        self.admin_url = url or ""
        self.created: list[str] = []
        self.version = ""

    async def start(self) -> None:
        if self.embedded is not None:
            self.admin_url = await asyncio.to_thread(self.embedded.start)
        conn = await asyncpg.connect(self.admin_url)
        try:
            self.version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def fresh(self, name: str) -> str:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return with_database(self.admin_url, name)

    async def stop(self, *, keep: bool) -> None:
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
            return
        if keep:
            return
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def server_pids(self) -> list[int]:
        """The postmaster and its children (embedded only; an external server is not measured)."""
        if self.embedded is None:
            return []
        try:
            pid = int((self.embedded.data_dir / "postmaster.pid").read_text().split()[0])
            parent = psutil.Process(pid)
            return [pid, *(p.pid for p in parent.children(recursive=True))]
        except (OSError, ValueError, psutil.Error):
            return []


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead (its query string kept)."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") >= 3 else head
    return f"{base}/{name}" + (f"?{tail}" if tail else "")
