"""How a replica judges the store's memory marker (gateway/store/continuity.py), marker by marker,
without a store: above all, that nothing but an admin's acknowledgement clears a loss."""

from __future__ import annotations

import logging

import pytest

from gateway.store.continuity import Continuity, Marker

EPOCH = "0123456789abcdef0123456789abcdef"


def lost_at(marker: Marker | None) -> Marker:
    """The loss a check asked to write, as it was written."""
    assert marker is not None and marker.lost
    return marker


def test_a_split_brain_never_passes_for_an_acknowledgement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Replica B alternates between the new master, behind (a rollback), and the old master,
    whose marker other replicas keep advancing as `ok` past the generation B found lost."""
    replica = Continuity("test")
    assert replica.observe(f"{EPOCH}:10:ok", created=False) is None
    with caplog.at_level(logging.INFO, logger="meetgate.store"):
        found = lost_at(replica.observe(f"{EPOCH}:8:ok", created=False))
        replica.reported(True)
        assert found.epoch != EPOCH
        new_master = found
        for generation in range(11, 31):
            # The old master: the epoch before the loss, `ok`, a generation past the lost one.
            written = lost_at(replica.observe(f"{EPOCH}:{generation}:ok", created=False))
            replica.reported(True)
            assert replica.lost and written.epoch != EPOCH
            new_master = Marker(new_master.epoch, new_master.generation + 1, True)
            assert replica.observe(new_master.encode(), created=False) is None
            assert replica.lost
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "acknowledged" in m], said
    assert len([m for m in said if "lost its memory" in m]) == 1, said


def test_the_acknowledgement_of_the_loss_clears_it() -> None:
    replica = Continuity("test")
    replica.observe(f"{EPOCH}:10:ok", created=False)
    found = lost_at(replica.observe(f"{EPOCH}:3:ok", created=False))
    replica.reported(True)
    # Another replica saw it and advanced it; an admin acknowledged it (lost -> ok, +1).
    assert replica.observe(f"{found.epoch}:5:lost", created=False) is None
    assert replica.lost
    assert replica.observe(f"{found.epoch}:7:ok", created=False) is None
    assert not replica.lost
    assert replica.observe(f"{found.epoch}:8:ok", created=False) is None
    assert not replica.lost


def test_an_ok_marker_of_the_lost_epoch_not_past_its_generation_is_an_older_copy() -> None:
    replica = Continuity("test")
    assert replica.observe(f"{EPOCH}:20:lost", created=False) is None
    written = lost_at(replica.observe(f"{EPOCH}:20:ok", created=False))
    replica.reported(True)
    assert replica.lost and written.epoch != EPOCH


def test_a_loss_whose_report_was_not_written_is_reported_again() -> None:
    replica = Continuity("test")
    replica.observe(f"{EPOCH}:10:ok", created=False)
    found = lost_at(replica.observe(f"{EPOCH}:3:ok", created=False))
    replica.reported(False)  # another replica's check changed the marker first
    again = lost_at(replica.observe(f"{EPOCH}:4:ok", created=False))
    assert again.epoch not in (EPOCH, found.epoch)
    assert replica.lost


def test_a_loss_the_previous_release_wrote_still_reads_as_a_loss_and_is_acknowledged() -> None:
    """The previous release wrote a loss under the epoch it found; a replica started after the
    upgrade never saw that epoch `ok`, takes the marker as it is, and its acknowledgement clears
    the loss."""
    replica = Continuity("test")
    assert replica.observe(f"{EPOCH}:9:lost", created=False) is None
    assert replica.lost
    assert replica.observe(f"{EPOCH}:10:ok", created=False) is None
    assert not replica.lost


def test_a_loss_under_an_epoch_seen_ok_gets_an_epoch_of_its_own() -> None:
    """A `lost` marker of the epoch this replica saw `ok` (the previous release's loss, or an
    older copy from before an acknowledgement): `ok` markers of that epoch may be about on
    another master, so the loss is written again under a new epoch, and they acknowledge
    nothing."""
    replica = Continuity("test")
    replica.observe(f"{EPOCH}:7:ok", created=False)
    found = lost_at(replica.observe(f"{EPOCH}:8:lost", created=False))
    replica.reported(True)
    assert replica.lost and found.epoch != EPOCH
    again = lost_at(replica.observe(f"{EPOCH}:40:ok", created=False))
    replica.reported(True)
    assert replica.lost and again.epoch not in (EPOCH, found.epoch)
    assert replica.observe(f"{again.epoch}:1:ok", created=False) is None
    assert not replica.lost


def test_a_marker_that_does_not_parse_is_a_loss() -> None:
    replica = Continuity("test")
    replica.observe(f"{EPOCH}:7:ok", created=False)
    found = lost_at(replica.observe(f"{EPOCH}:8:ok:0000000000000000", created=False))
    assert replica.lost and "does not parse" in replica.reason and found.epoch != EPOCH
