"""The grid that places the dashboards' panels (cli/grafana/panels.py): ids follow the order panels are
added in, and a panel that does not fit the 24 columns starts a row under the tallest of the last."""

from __future__ import annotations

from cli.grafana.panels import HALF, HERO, STAT, Grid


def positions(grid: Grid) -> list[tuple[int, int, int, int, int]]:
    return [
        (p["id"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"])
        for p in grid.panels
    ]


def test_rows_wrap_under_the_tallest_panel() -> None:
    grid = Grid()
    grid.row(STAT, *({"title": f"s{i}"} for i in range(6)))  # 6 x 4 columns fill the first row
    grid.row(HERO, {"title": "hero"})  # 24 wide: under the stats, at y = 4
    grid.row(HALF, {"title": "a"}, {"title": "b"}, {"title": "c"})  # two per row, then a third
    assert positions(grid) == [
        *((i + 1, 4 * i, 0, 4, 4) for i in range(6)),
        (7, 0, 4, 24, 10),
        (8, 0, 14, 12, 8),  # 4 + 10
        (9, 12, 14, 12, 8),
        (10, 0, 22, 12, 8),  # 14 + 8
    ]


def test_a_panel_keeps_its_keys_after_id_and_position() -> None:
    grid = Grid()
    grid.add({"type": "stat", "title": "x"}, w=6, h=4)
    assert list(grid.panels[0]) == ["id", "gridPos", "type", "title"]
