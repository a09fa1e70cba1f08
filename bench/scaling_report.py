"""What ``bench.scaling`` shows: a table (one column per run) and a log-log plot of readings/s, CPU
per reading and peak memory against the fleet size.

Kept apart from the runs themselves so the figures can be re-plotted from a result file
(``python -m bench.scaling_report bench/results/scaling-<time>.json``) without running anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.children import ROOT
from bench.results import RESULTS

INSTALL_HINT = ".venv/bin/pip install -e '.[bench]'   (or: .venv/bin/pip install matplotlib)"
ROLES = ("pipeline", "postgres", "mosquitto", "publishers")


def table(runs: list[dict[str, Any]]) -> Table:
    """One column per run, one row per figure."""
    out = Table(title="peakwatch scaling: one reading per meter per 15 s, sites of 100 meters")
    out.add_column("")
    for run in runs:
        out.add_column(run["label"], justify="right")

    def row(label: str, cell: Any) -> None:
        out.add_row(label, *(cell(r["figures"]) for r in runs))

    row("readings stored", lambda f: f"{f['readings_stored']:,}")
    row("readings lost", lambda f: f"{f['readings_lost']:,}")
    row("wall s", lambda f: f"{f['wall_s']:.1f}")
    row("readings/s", lambda f: f"[bold]{f['readings_per_s']:,.0f}[/bold]")
    for role, label in (
        ("pipeline", "CPU µs/reading: pipeline"),
        ("processor_step", "  of which processor step"),
        ("postgres", "CPU µs/reading: PostgreSQL"),
        ("mosquitto", "CPU µs/reading: mosquitto"),
        ("publishers", "CPU µs/reading: publishers"),
    ):
        row(label, lambda f, role=role: f"{f['cpu_us_per_reading'][role]:.1f}")
    for role in ROLES:
        row(f"peak MiB: {role}", lambda f, role=role: f"{f['rss_peak_mib'].get(role, 0.0):,.0f}")
    row("steady MiB: pipeline (last half)", lambda f: f"{f['rss_steady_mib'].get('pipeline', 0.0):,.0f}")
    row("database MB / M readings", lambda f: f"{f['database_mb_per_million']:.0f}")
    row("  readings table+indexes", lambda f: f"{f['readings_mb_per_million']:.0f}")
    row("KPI windows written / due", lambda f: f"{f['kpi_windows']:,} / {f['kpi_windows_expected']:,}")
    row("late events, dead letters", lambda f: f"{f['late_events']}, {f['dead_letters']}")
    row("CPU cores: rest of machine", lambda f: f"{f['machine_other_cores'] or 0.0:.2f}")
    return out


def plot(runs: list[dict[str, Any]], stamp: str, console: Console) -> list[Path]:
    """``bench/results/scaling-<stamp>.svg`` and ``.png``: three log-log panels against meters (the
    fast runs as lines, real-time runs' memory as dashed lines). Without matplotlib: says how to get
    it and returns nothing (the table and the JSON file still hold every figure)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print(f"[yellow]no plot: matplotlib is not installed; {INSTALL_HINT}[/yellow]")
        return []
    fast = sorted((r for r in runs if r["kind"] == "fast"), key=lambda r: r["meters"])
    paced = sorted((r for r in runs if r["kind"] == "realtime"), key=lambda r: r["meters"])
    if not fast and not paced:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    _panel(axes[0], fast, "readings/s (as fast as possible)", {"readings/s": lambda f: f["readings_per_s"]})
    cpu = {
        role: (lambda f, role=role: f["cpu_us_per_reading"][role])
        for role in ("pipeline", "processor_step", "postgres", "mosquitto")
    }
    _panel(axes[1], fast, "CPU µs per reading", cpu)
    rss = {role: (lambda f, role=role: f["rss_peak_mib"].get(role, 0.0)) for role in ROLES}
    _panel(axes[2], fast, "peak memory, MiB", rss)
    paced_rss = {f"{role} (real time)": rss[role] for role in ROLES}
    _panel(axes[2], paced, "peak memory, MiB", paced_rss, style="--")
    fig.suptitle("peakwatch scaling: 1 reading / meter / 15 s, sites of 100 meters (log-log)")
    fig.tight_layout()
    paths = [RESULTS / f"scaling-{stamp}.{ext}" for ext in ("svg", "png")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for path in paths:
        fig.savefig(path, dpi=110)
        console.print(f"plot: {path.relative_to(ROOT)}", markup=False)
    plt.close(fig)
    return paths


def _panel(ax: Any, runs: list[dict[str, Any]], title: str, series: dict[str, Any], style: str = "-") -> None:
    if not runs:
        return
    meters = [r["meters"] for r in runs]
    for i, (name, value) in enumerate(series.items()):  # colour by position: a role keeps its colour
        ys = [value(r["figures"]) for r in runs]
        if any(y > 0 for y in ys):
            ys = [y if y > 0 else float("nan") for y in ys]
            ax.plot(meters, ys, style, color=f"C{i}", marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("meters")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


def main() -> None:
    """Re-plot (and re-tabulate) a result file."""
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.scaling_report bench/results/scaling-<time>.json")
    path = Path(sys.argv[1])
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    console = Console()
    console.print(table(runs))
    plot(runs, path.stem.removeprefix("scaling-"), console)


if __name__ == "__main__":
    main()
