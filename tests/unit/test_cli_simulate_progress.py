"""``peakwatch simulate``'s live line shows event time on the sites' clock (or UTC), never the
machine's: a run on a UTC server and one on a laptop in Shanghai print the same line."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

from cli.simulate_sources import fleet_zone, progress_line
from peakwatch.domain.models import SiteKind
from simulators.meters import SiteInfo
from simulators.options import SimStats
from simulators.synthetic import SyntheticSimulator

NEW_YEAR_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z (20,454 days × 86,400,000 ms)


def _site(site_id: str, zone: str) -> SyntheticSimulator:
    return SyntheticSimulator(SiteInfo(site_id, site_id, SiteKind.PARK, zone), meters=1, seed=0)


def test_the_fleet_zone_is_the_sites_shared_zone_else_utc() -> None:
    assert fleet_zone([_site("a", "Asia/Shanghai"), _site("b", "Asia/Shanghai")]) == ZoneInfo("Asia/Shanghai")
    assert fleet_zone([_site("a", "Asia/Shanghai"), _site("b", "Europe/Berlin")]) is UTC


def test_the_progress_line_shows_event_time_in_the_zone_given() -> None:
    stats = SimStats(last_ts_ms=NEW_YEAR_2026)
    # 00:00Z is 08:00 in Shanghai (UTC+8)
    assert "event time 2026-01-01 08:00:00 +0800" in progress_line(stats, ZoneInfo("Asia/Shanghai")).plain
    assert "event time 2026-01-01 00:00:00 +0000" in progress_line(stats).plain
    assert "event time -" in progress_line(SimStats()).plain
