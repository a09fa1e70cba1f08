"""Background tasks that never die silently: the one supervisor of every long-running loop.

The accountant, the alert-rule reload and the notifier's reconciliation loop run beside the main step
for the life of the process. Before this module, an exception their own ``except`` did not expect
ended the task unseen: the restatement queue stopped being worked and nothing said so. Now each runs
under ``Supervisor.run``:

* a crash is logged at ERROR with its traceback, counted (``peakwatch_task_crashes_total{task}``),
  marks the task degraded (``peakwatch_task_degraded{task}`` 1, and ``/healthz`` shows the task with
  its last error: ``Supervisor.states``), and the loop is started again after a backoff that doubles
  from ``initial_s`` to ``max_s`` (1 s -> 5 min), reset once the task reports a clean unit of work;
* ``ok(name)`` (the task finished a pass, a round) clears the degraded state;
* a failure the task isolates itself (one site's restatement) is a *problem* of the task
  (``problem(name, subject, error)``, counted in ``peakwatch_task_failures_total{task}``): the task
  keeps running, and health shows it degraded until
  ``problem(name, subject, None)`` clears it;
* cancellation keeps its meaning (shutdown), and so does what a loop handles itself: the accountant's
  loop ends on ``FencedError`` and stops the processor, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from peakwatch.clock import now_ms
from peakwatch.health import ComponentStatus
from peakwatch.retry import pause

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
MAX_ERROR_CHARS = 500
MAX_SHOWN = 3
"""Problems of one task that health spells out (a poisoned site can fail many late-data requests)."""


@dataclass
class TaskState:
    """What health shows about one supervised task."""

    name: str
    crashes: int = 0
    last_error: str | None = None
    """The last crash's exception (type and message), ``None`` once the task ran cleanly again."""
    last_crash_ms: int | None = None
    retry_in_s: float | None = None
    """The backoff before the restart under way (``None``: running)."""
    problems: dict[str, str] = field(default_factory=dict)
    """Failures the task isolated and keeps retrying (subject, e.g. ``site dc-1`` -> error)."""

    @property
    def ok(self) -> bool:
        return self.last_error is None and not self.problems

    def describe(self) -> str:
        """One line for an operator: what is wrong and what happens next."""
        parts: list[str] = []
        if self.last_error is not None:
            again = "" if self.retry_in_s is None else f", restarting in {self.retry_in_s:.0f} s"
            parts.append(f"crashed {self.crashes} time(s), last: {self.last_error}{again}")
        problems = sorted(self.problems.items())
        parts.extend(f"{subject} failing (retried): {error}" for subject, error in problems[:MAX_SHOWN])
        if len(problems) > MAX_SHOWN:
            parts.append(f"{len(problems) - MAX_SHOWN} more failing (the log names them)")
        if not parts:
            return "running" if self.crashes == 0 else f"running (recovered after {self.crashes} crash(es))"
        return "; ".join(parts)


def describe_error(exc: BaseException) -> str:
    """``Type: message``, cut to a length a health page and a database column hold."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class Supervisor:
    """Runs background loops and remembers how they fare. One per process (its metrics are registered
    on ``registry``: the processor and the notifier of ``peakwatch up`` share the stack's)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        initial_s: float = INITIAL_BACKOFF_S,
        max_s: float = MAX_BACKOFF_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.crashes = Counter(
            "peakwatch_task_crashes_total",
            "Crashes of a background task (restarted with backoff; the log has the traceback).",
            ["task"],
            registry=registry,
        )
        self.failures = Counter(
            "peakwatch_task_failures_total",
            "Failures a background task isolated and retries (one site's restatement; the log has it).",
            ["task"],
            registry=registry,
        )
        self.degraded = Gauge(
            "peakwatch_task_degraded",
            "1 while a background task's last run crashed or it reports failures it retries.",
            ["task"],
            registry=registry,
        )
        self.initial_s = initial_s
        self.max_s = max_s
        self._clock = clock
        self._states: dict[str, TaskState] = {}
        self._clean: dict[str, bool] = {}

    def state(self, name: str) -> TaskState:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = TaskState(name)
            self.crashes.labels(task=name)  # the series exist (0) before any crash
            self.failures.labels(task=name)
            self.degraded.labels(task=name).set(0)
        return state

    def states(self) -> list[TaskState]:
        return [self._states[n] for n in sorted(self._states)]

    async def run(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        *,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run ``body()`` until it returns; start it again after each crash (any ``Exception``: what must
        end the task, such as fencing, ``body`` handles itself), waiting the backoff or until ``stop`` is
        set (then return). Cancellation propagates."""
        state = self.state(name)
        delay_s = self.initial_s
        while True:
            self._clean[name] = False
            try:
                await body()
                return
            except Exception as exc:
                if self._clean.get(name):
                    delay_s = self.initial_s  # it worked in between: a new failure, not the same one
                log.exception("background task %s crashed; restarting in %.1f s", name, delay_s)
                self.crashes.labels(task=name).inc()
                self.degraded.labels(task=name).set(1)
                state.crashes += 1
                state.last_error = describe_error(exc)
                state.last_crash_ms = self._clock()
                state.retry_in_s = delay_s
            if await pause(delay_s, stop):
                return
            state.retry_in_s = None
            delay_s = min(delay_s * 2, self.max_s)

    def ok(self, name: str) -> None:
        """``name`` finished a unit of work: a crash before it is over (the backoff starts again)."""
        state = self.state(name)
        self._clean[name] = True
        if state.last_error is not None:
            log.info("background task %s works again after %d crash(es)", name, state.crashes)
            state.last_error = None
        self.degraded.labels(task=name).set(0 if state.ok else 1)

    def clear_problems(self, name: str) -> None:
        """Forget every failure ``name`` reported (its work was handed over: a new owner retries it)."""
        for subject in list(self.state(name).problems):
            self.problem(name, subject, None)

    def problem(self, name: str, subject: str, error: str | None) -> None:
        """Record (``error``) or clear (``None``) a failure ``name`` isolated and keeps retrying."""
        state = self.state(name)
        if error is None:
            if state.problems.pop(subject, None) is not None:
                log.info("%s: %s works again", name, subject)
        else:
            state.problems[subject] = error
            self.failures.labels(task=name).inc()
        self.degraded.labels(task=name).set(0 if state.ok else 1)

    def health(self) -> list[ComponentStatus]:
        """One line per supervised task for ``/healthz``: running, or what crashed or fails."""
        return [ComponentStatus(name=f"task {t.name}", ok=t.ok, detail=t.describe()) for t in self.states()]
