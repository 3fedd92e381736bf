"""bench/attack_plot.py: the panels' one-second bins from `Events`, and the PNG (matplotlib, the
`bench` extra, which scripts/test installs with the test extra)."""

from __future__ import annotations

from pathlib import Path

from bench.attack_plot import plot, series
from tests.unit.test_attack_figures import attack


def test_each_panel_counts_its_events_per_second() -> None:
    data = series(attack(), flood_series=[(55.0, 900), (55.5, 100), (56.2, 700)])
    assert len(data["joins admitted"]) == 111  # 0..110.1 s
    assert [i for i, n in enumerate(data["joins admitted"]) if n] == [1, 2, 3, 60, 61]
    assert data["flood refused"][55:57] == [1000.0, 700.0]
    assert data["joins refused"][62] == 1
    assert data["removed by a host"][80] == 1 and data["removed by the guard"][90] == 1
    assert sum(data["troll chat heard"]) == 3 and sum(data["legitimate chat heard"]) == 1


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    plot(attack(), path, flood_series=[(55.0, 900)])
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
