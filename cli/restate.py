"""``peakwatch db restate``: queue a manual restatement of a range, and with ``--wait`` see it done.

What an operator can count on (docs/operations.md, "Restatements and revisions"):

* The site must be one the database knows (the error lists them); without ``--site`` one request is
  queued per known site, so that each can be followed.
* A range reaching into the future is cut at the current minute, with a notice: windows after it do
  not exist yet, and the processor computes them from the current inputs when they close. A range
  starting in the future is refused.
* It says whether a processor works the queue: ``peakwatch up`` running from the data directory (its
  card), or a processor's session on the database (``PROCESSOR_APPLICATION``). Without one the request
  stays queued until a processor starts.
* ``--wait`` shows a progress bar of the requests and exits 0 when all are done; 1 when no processor
  runs, when it stops while waiting, when a request failed (its error is shown; the processor keeps
  retrying it with backoff), or at ``--timeout``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cli.common import console, database, database_options, run
from cli.running import read_card
from peakwatch.clock import now_ms
from peakwatch.config import Settings
from peakwatch.domain.instants import MINUTE_MS, minute_text, parse_iso
from peakwatch.domain.models import RestatementReason
from peakwatch.errors import ConfigError, InstantError

if TYPE_CHECKING:
    from peakwatch.store import Store

POLL_S = 0.5
DETAIL = "requested with peakwatch db restate"


def parse_instant(value: str) -> int:
    try:
        return parse_iso(value)
    except InstantError as exc:
        raise typer.BadParameter(str(exc)) from None


@database_options
def db_restate(
    from_: Annotated[
        str, typer.Option("--from", help="Start, ISO 8601 with offset (2026-01-01T00:00+08:00).")
    ],
    to: Annotated[
        str,
        typer.Option(
            help="End (exclusive), ISO 8601 with offset; a future end is cut at the current minute."
        ),
    ],
    site: Annotated[str | None, typer.Option(help="One site; default: every site.")] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until the processor has done it (progress bar); exit 1 if not."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.", min=1)] = 600.0,
    *,
    settings: Settings,
) -> None:
    """Queue a restatement: the running processor rebuilds the windows of the range from the stored
    meter intervals and keeps every changed value as a revision (reason manual). Use it after
    upgrading from a schema without multi-period windows, or after correcting data by hand."""
    start, end = parse_instant(from_), parse_instant(to)
    if end <= start:
        raise typer.BadParameter("--to must be after --from")
    now_minute = now_ms() // MINUTE_MS * MINUTE_MS
    if start >= now_minute:
        raise typer.BadParameter(
            f"--from {from_} is not in the past: nothing is stored there to restate "
            f"(it is now {minute_text(now_minute)})"
        )
    clamp = None
    if end > now_minute:
        clamp = (
            f"note: --to {to} is in the future; restating up to the current minute, "
            f"{minute_text(now_minute)} "
            "(later windows are computed from the current inputs when they close)"
        )
        end = now_minute
    run(_restate(settings, site, start, end, timeout if wait else None, clamp))


async def _restate(
    settings: Settings, site: str | None, start: int, end: int, wait_s: float | None, clamp: str | None
) -> None:
    async with database(settings) as store:
        known = [s.id for s in await store.list_sites()]
        if not known:
            raise ConfigError(
                "the database knows no sites yet: run peakwatch up or peakwatch db migrate --config …"
            )
        if site is not None and site not in known:
            raise ConfigError(f"unknown site {site!r}; known sites: {', '.join(known)}")
        if clamp is not None:
            console.print(clamp, markup=False)
        sites = [site] if site is not None else known
        requests = {
            await store.inputs.request_restatement(s, None, start, end, RestatementReason.MANUAL, DETAIL): s
            for s in sites
        }
        ids = ", ".join(str(i) for i in requests)
        console.print(
            f"restatement of {', '.join(sites)} from {minute_text(start)} to {minute_text(end)} "
            f"queued (request {ids})",
            markup=False,
        )
        processor = await _processor(settings, store)
        if processor is None:
            console.print(
                "no processor is running on this database: the request stays queued until peakwatch up "
                "or peakwatch processor starts",
                markup=False,
            )
            if wait_s is not None:
                raise typer.Exit(1)
            return
        console.print(
            f"{processor} works the queue; a range is restated once its windows are stored", markup=False
        )
        if wait_s is not None:
            await _wait(settings, store, requests, wait_s)


async def _processor(settings: Settings, store: Store) -> str | None:
    """Who works the restatement queue, in words; ``None``: nobody."""
    from peakwatch.store.store import PROCESSOR_APPLICATION

    card = read_card(settings.data_dir)
    # the card speaks for its own database only: --database-url may name another one
    if card is not None and settings.database_url in (None, card.database_url):
        return f"peakwatch up (pid {card.pid})"
    sessions = await store.inputs.sessions_named(PROCESSOR_APPLICATION)
    return f"a processor ({sessions} session(s) on the database)" if sessions else None


async def _wait(settings: Settings, store: Store, requests: dict[int, str], wait_s: float) -> None:
    """Until every request is done; exit 1 at the timeout or when the processor goes away."""
    deadline = time.monotonic() + wait_s
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("restating", total=len(requests))
        while pending := await store.inputs.restatements_pending(list(requests)):
            waiting = sorted({requests[i] for i in pending})
            progress.update(
                task, completed=len(requests) - len(pending), description=f"restating {', '.join(waiting)}"
            )
            if time.monotonic() > deadline:
                break
            failures = await store.inputs.restatement_failures(list(pending))
            if failures:
                progress.stop()
                for request_id, error in sorted(failures.items()):
                    console.print(
                        f"error: request {request_id} ({requests[request_id]}) failed: {error}",
                        style="red",
                        markup=False,
                    )
                console.print(
                    "the processor retries it with backoff (its log has the traceback; GET /healthz shows "
                    "the task processor-accountant degraded); the request stays queued",
                    markup=False,
                )
                raise typer.Exit(1)
            if await _processor(settings, store) is None:
                progress.stop()
                console.print(
                    "error: the processor stopped; the request stays queued", style="red", markup=False
                )
                raise typer.Exit(1)
            await asyncio.sleep(POLL_S)  # another process's table: no event to await
        else:
            progress.update(task, completed=len(requests), description="restated")
    if pending:
        console.print(
            f"error: not done after {wait_s:g} s: request {', '.join(str(i) for i in sorted(pending))} "
            f"({', '.join(sorted({requests[i] for i in pending}))}) still pending. A range is restated once "
            "its windows are stored; the request stays queued (GET /api/v1/restatements lists the queue).",
            style="red",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(f"done: {', '.join(requests.values())} restated", markup=False)
