"""`meetgate doctor`'s options: --timeout takes only a sensible number of seconds, and building
`meetgate`'s parser (every command does) does not import the checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.cli import build_parser


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "five", ""])
def test_a_senseless_timeout_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["doctor", "--timeout", value])
    assert exit_.value.code == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "seconds"), [("0.5", 0.5), ("5", 5.0), ("300", 300.0)])
def test_a_timeout_in_seconds_is_taken(value: str, seconds: float) -> None:
    assert build_parser().parse_args(["doctor", "--timeout", value]).timeout == seconds


def test_other_commands_do_not_import_doctor() -> None:
    script = (
        "import sys; from gateway.cli import build_parser; build_parser();"
        " print(sorted(m for m in sys.modules if m in ('gateway.doctor', 'gateway.doctor_outside',"
        " 'gateway.doctor_identity')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
