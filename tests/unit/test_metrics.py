"""The metrics text is valid Prometheus exposition and bounded in size."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import MAX_SERIES, Metrics
from gateway.proxy.gate import join_outcome


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


def test_two_gates_in_one_process_keep_their_own_counts() -> None:
    """Catches: metrics on prometheus_client's global registry (a second `Metrics` would raise
    DuplicateTimeseries, or share the first one's counts)."""
    first, second = Metrics(), Metrics()
    first.revocations.inc(reason="revoked")
    assert first.revocations.value(reason="revoked") == 1
    assert second.revocations.value(reason="revoked") == 0


def test_the_exposition_parses_with_the_names_it_always_had() -> None:
    """Catches: a counter's `_total` doubled or dropped by the library, `_created` series added
    beside each counter and histogram, a histogram whose buckets do not add up to its count."""
    metrics = Metrics()
    metrics.admissions.inc(via="invite")
    metrics.challenges_failed.inc()
    metrics.joins.observe(0.004, outcome="admitted")
    metrics.joins.observe(7.0, outcome="admitted")
    metrics.revocation_closes.observe(0.02)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render())
        for sample in family.samples
    }
    assert samples[("meetgate_admissions_total", (("via", "invite"),))] == 1
    assert samples[("meetgate_pow_failed_total", ())] == 1
    assert not [name for name, _ in samples if name.endswith(("_created", "_total_total"))]
    admitted = (("outcome", "admitted"),)
    assert samples[("meetgate_join_seconds_count", admitted)] == 2
    assert samples[("meetgate_join_seconds_bucket", (("le", "0.005"), *admitted))] == 1
    assert samples[("meetgate_join_seconds_bucket", (("le", "5.0"), *admitted))] == 1
    assert samples[("meetgate_join_seconds_bucket", (("le", "+Inf"), *admitted))] == 2
    assert samples[("meetgate_revocation_close_seconds_count", ())] == 1


def test_histogram_series_are_bounded() -> None:
    """Catches: a histogram label (the join's outcome) growing without bound like the rest."""
    metrics = Metrics()
    for i in range(MAX_SERIES + 10):
        metrics.joins.observe(0.01, outcome=f"o{i}")
    assert metrics.render().count("meetgate_join_seconds_count{") == MAX_SERIES


@pytest.mark.parametrize(
    ("status", "headers", "outcome"),
    [
        (303, [(b"location", b"/room#jwt=x"), (b"set-cookie", b"meetgate=s; Path=/")], "admitted"),
        (303, [(b"location", b"/_meetgate/host/room"), (b"set-cookie", b"meetgate=s")], "admitted"),
        (303, [(b"location", b"/room?lang=en#jwt=x")], "admitted"),
        (
            303,
            [(b"location", b"/_meetgate/lobby/room/wait"), (b"set-cookie", b"meetgate-lobby=t")],
            "pending",
        ),
        (200, [(b"content-type", b"text/html")], "pending"),
        (404, [(b"content-type", b"text/html")], "refused"),
        (429, [(b"retry-after", b"30")], "refused"),
    ],
)
def test_a_joins_outcome_is_read_from_its_answer(
    status: int, headers: list[tuple[bytes, bytes]], outcome: str
) -> None:
    """Catches: the lobby's own cookie taken for an admission, a refusal or a proof-of-work page
    counted as admitted."""
    assert join_outcome(status, headers, b"meetgate=") == outcome
