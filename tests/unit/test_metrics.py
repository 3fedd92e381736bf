"""The metrics text is valid Prometheus exposition and bounded in size."""

from __future__ import annotations

from gateway.metrics import MAX_SERIES, Metrics


def test_render_counters_and_gauges() -> None:
    metrics = Metrics()
    metrics.rejections.inc(reason="rate_limit")
    metrics.rejections.inc(reason="rate_limit")
    metrics.pressure.set(7, room='we"ird\nroom')
    text = metrics.render()
    assert "# TYPE meetgate_rejections_total counter" in text
    assert 'meetgate_rejections_total{reason="rate_limit"} 2' in text
    assert 'meetgate_pressure{room="we\\"ird\\nroom"} 7' in text


def test_series_are_bounded() -> None:
    metrics = Metrics()
    for i in range(MAX_SERIES + 100):
        metrics.pressure.set(1, room=f"r{i}")
    assert metrics.render().count("meetgate_pressure{") == MAX_SERIES
