"""bench.scaling's plan and memory figures: what they compute decides what the bench publishes (how many
readings per meter, at what pace) and which memory figure it reports, so each is checked on hand-made
input."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.database import Database
from bench.memory import MemorySampler, _role
from bench.scaling import plan_runs


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "fleets": "1000,10000",
        "hours": 1.0,
        "pace": "both",
        "realtime_minutes": 2.0,
        "backfill_days": 30.0,
        "backfill_meters": 1000,
        "publishers": 2,
        "window": 4000,
        "drain_timeout": 900.0,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_plan_is_one_reading_per_meter_per_15_s_in_sites_of_100() -> None:
    runs = plan_runs(_args())
    assert [(r.kind, r.meters) for r in runs] == [
        ("fast", 1000),
        ("fast", 10000),
        ("realtime", 1000),
        ("realtime", 10000),
        ("backfill", 1000),
    ]
    fast = runs[1].cfg
    assert (fast.sites, fast.meters, fast.steps, fast.step_ms, fast.batch) == (100, 100, 240, 15_000, 1)
    assert fast.publisher_options == ()


def test_realtime_pace_is_meters_over_15_per_second_split_between_publishers() -> None:
    paced = plan_runs(_args(fleets="10000", pace="realtime"))[0].cfg
    assert paced.steps == 8  # 2 minutes of 15-s readings
    assert paced.publisher_options == ("--rate", "333.333")  # 10,000 / 15 / 2 publishers


def test_backfill_is_a_month_of_50_reading_batches_with_the_lateness_a_batch_spans() -> None:
    backfill = plan_runs(_args(fleets=""))[0].cfg
    assert (backfill.batch, backfill.steps, backfill.sites) == (50, 30 * 5760, 10)
    assert backfill.allowed_lateness_ms == 10_000 + 50 * 15_000


def test_lateness_covers_the_interval_a_single_15_s_reading_reaches_back() -> None:
    """A 15-s reading feeds the window its interval began in, 15 s before its timestamp: 10 s of
    lateness let the round's first reading (or the idle advance) close that window first."""
    for run in plan_runs(_args(fleets="1000", backfill_days=0)):
        assert run.cfg.allowed_lateness_ms == 10_000 + 15_000


def test_small_fleet_is_one_site() -> None:
    cfg = plan_runs(_args(fleets="20", pace="fast", backfill_days=0))[0].cfg
    assert (cfg.sites, cfg.meters) == (1, 20)


def test_memory_peak_and_steady_state_per_role(tmp_path: Path) -> None:
    sampler = MemorySampler(Database(tmp_path, "postgresql://u@h/postgres", fast=False))
    sampler.samples = [
        (0.0, {"pipeline": 100, "postgres": 50}),
        (1.0, {"pipeline": 900, "postgres": 60}),  # the peak: a backlog held while it drains
        (2.0, {"pipeline": 300, "postgres": 70}),
        (3.0, {"pipeline": 310, "postgres": 70, "publishers": 5}),
    ]
    assert sampler.peak() == {"pipeline": 900, "postgres": 70, "publishers": 5}
    assert sampler.steady() == {"pipeline": 310, "postgres": 70, "publishers": 5}  # median of the last half


def test_roles_by_command_line() -> None:
    assert _role("/venv/bin/python -m bench.pipeline --config r.yaml") == "pipeline"
    assert _role("/venv/bin/python -m bench.publisher --url mqtt://x") == "publishers"
    assert _role("/usr/sbin/mosquitto -c /tmp/m.conf") == "mosquitto"
    assert _role("/bin/sh -c true") is None
