"""`meetgate doctor` on the wire guard's stanza reader: a WARN when the guard is on and reads in
Python (the compiled reader was not built at install time), saying what to install; PASS with
the compiled reader, or with the guard off."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.doctor import check_settings, check_stanza_reader
from gateway.doctor_findings import Verdict
from gateway.proxy import stanzas
from gateway.settings import Settings, load_settings


def test_the_python_reader_under_the_guard_is_a_warning_that_says_what_to_install() -> None:
    finding = check_stanza_reader(True, "python")
    assert finding.verdict is Verdict.WARN
    assert finding.check == "stanza reader"
    for named in ("in Python", "five times", "gateway/proxy/_reader.c", "gcc", "libexpat1-dev"):
        assert named in finding.detail


@pytest.mark.parametrize(("enabled", "reader"), [(True, "compiled"), (False, "compiled")])
def test_the_compiled_reader_passes(enabled: bool, reader: str) -> None:
    assert check_stanza_reader(enabled, reader).verdict is Verdict.PASS


def test_the_python_reader_with_the_guard_off_passes() -> None:
    finding = check_stanza_reader(False, "python")
    assert finding.verdict is Verdict.PASS
    assert "[guard] enabled = false" in finding.detail


def settings_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> tuple[Settings, Path]:
    """Settings with secrets made for the run, from no config file (the working directory is an
    empty one: a checkout's ./meetgate.toml would be read); `config` stands for the file doctor
    names."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    config = tmp_path / "meetgate.toml"
    config.write_text("", encoding="utf-8")
    config.chmod(0o600)
    return load_settings(None, environ, allow_ephemeral=True), config


@pytest.mark.parametrize(("guard", "verdict"), [("true", Verdict.WARN), ("false", Verdict.PASS)])
def test_doctor_reports_the_reader_the_guard_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: str, verdict: Verdict
) -> None:
    """Doctor asks gateway/proxy/stanzas.py, where the guard's reading chooses its reader."""
    settings, config = settings_with(tmp_path, monkeypatch, {"MEETGATE_GUARD__ENABLED": guard})
    monkeypatch.setattr(stanzas, "READER", "python")
    found = [f for f in check_settings(settings, config) if f.check == "stanza reader"]
    assert [f.verdict for f in found] == [verdict]


def test_doctor_passes_the_compiled_reader_this_install_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test command builds the compiled reader (it stops without it): doctor, asked with
    nothing patched, says so. (Its expectation was once worked out from the value doctor reads,
    which could not fail.)"""
    settings, config = settings_with(tmp_path, monkeypatch, {})
    found = [f for f in check_settings(settings, config) if f.check == "stanza reader"]
    assert [f.verdict for f in found] == [Verdict.PASS]
