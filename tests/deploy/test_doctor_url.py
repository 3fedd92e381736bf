"""`meetgate doctor --url` without a config file, as an outsider sees the gate: the real CLI in a
subprocess against a real `meetgate serve` behind nginx terminating TLS (tests/fixtures/
tls_front.py), a front that routes signalling around the gate, a certificate about to expire,
and an address where nothing listens."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.doctor_outside import BOSH_SPELLINGS, WEBSOCKET_SPELLINGS
from tests.deploy.conftest import Signalling
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.tls_front import FrontedGate, leak_to, start_fronted_gate
from tests.spellings import ISSUE_SPELLINGS, MALFORMED_SPELLINGS, WELL_FORMED_SPELLINGS

pytestmark = pytest.mark.slow


def doctor_outside(cwd: Path, *args: str) -> tuple[int, str]:
    """`meetgate doctor` with no config anywhere (a directory without meetgate.toml, no
    MEETGATE_CONFIG), as an admin checks a gate from their laptop."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())},
    )
    return result.returncode, result.stdout + result.stderr


def verdicts(report: str) -> dict[str, str]:
    found = {}
    for line in report.splitlines():
        match = re.match(r"(PASS|WARN|FAIL)  (\S.*?)\s{2,}", line)
        if match:
            found[match.group(2).strip()] = match.group(1)
    return found


def line_of(report: str, check: str) -> str:
    return next(
        line for line in report.splitlines() if re.match(rf"\w+  {re.escape(check)}\s", line)
    )


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[FrontedGate]:
    site, processes = start_fronted_gate(tmp_path_factory.mktemp("fronted"), upstream=jitsi_web.url)
    yield site
    for proc in processes:
        stop_process(proc)


def test_a_gate_behind_tls_passes_from_outside(tmp_path: Path, fronted: FrontedGate) -> None:
    status, report = doctor_outside(tmp_path, "--url", fronted.url, "--cafile", str(fronted.cafile))
    print(report)
    assert "Traceback" not in report
    assert status == 0, report
    found = verdicts(report)
    for check in (
        "https",
        "gate",
        "hsts",
        "csp",
        "headers",
        "probe signalling",
        "probe jitsi",
    ):
        assert found.get(check) == "PASS", f"{check}:\n{report}"
    assert "until 20" in line_of(report, "https")
    assert f"{len(BOSH_SPELLINGS) + len(WEBSOCKET_SPELLINGS)} probes" in report
    # Without a config, config.js cannot be read from outside: said, not failed.
    assert found["config.js"] == "WARN" and "--jitsi-config-url" in report
    # Nothing that needs the config was checked.
    for check in ("config", "secrets", "store", "websocket, forged", "trusted proxies"):
        assert check not in found, report


def test_config_js_is_scanned_when_named(
    tmp_path: Path, fronted: FrontedGate, jitsi_web: Any
) -> None:
    status, report = doctor_outside(
        tmp_path,
        "--url",
        fronted.url,
        "--cafile",
        str(fronted.cafile),
        "--jitsi-config-url",
        jitsi_web.url + "/config.js",
    )
    found = verdicts(report)
    assert status == 0, report
    assert found["third parties"] == "PASS" and found["guest domain"] == "PASS", report
    # The test web server's config.js sets no tokenAuthUrl: said as for a configured run.
    assert found["tokenAuthUrl"] == "WARN", report


def test_the_plain_address_of_the_gate_is_refused_as_https_but_probed(
    tmp_path: Path, fronted: FrontedGate
) -> None:
    status, report = doctor_outside(tmp_path, "--url", fronted.gateway.url)
    found = verdicts(report)
    assert status == 0, report
    assert found["https"] == "WARN" and "fine on loopback" in report
    assert "hsts" not in found
    assert found["probe signalling"] == "PASS" and found["probe jitsi"] == "PASS", report


def test_a_certificate_nobody_trusts_fails(tmp_path: Path, fronted: FrontedGate) -> None:
    status, report = doctor_outside(tmp_path, "--url", fronted.url)
    assert status == 1 and "Traceback" not in report
    line = line_of(report, "https")
    assert line.startswith("FAIL") and "not from a CA browsers trust" in line, report


@pytest.fixture(scope="module")
def leaky_front(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, token_signalling: Signalling
) -> Iterator[FrontedGate]:
    """nginx sending /http-bind and /xmpp-websocket straight to the signalling server and
    config.js to Jitsi's web server, around the gate, and dropping the gate's frame denial and
    HSTS: the hand-written site doctor exists to catch."""
    site, processes = start_fronted_gate(
        tmp_path_factory.mktemp("leaky"),
        upstream=jitsi_web.url,
        leaks=leak_to(token_signalling.url, jitsi=jitsi_web.url),
    )
    yield site
    for proc in processes:
        stop_process(proc)


def test_signalling_routed_around_the_gate_fails(tmp_path: Path, leaky_front: FrontedGate) -> None:
    status, report = doctor_outside(
        tmp_path, "--url", leaky_front.url, "--cafile", str(leaky_front.cafile)
    )
    print(report)
    assert status == 1, report
    line = line_of(report, "probe signalling")
    assert line.startswith("FAIL"), report
    assert "/http-bind -> 200" in line and "WebSocket /xmpp-websocket -> 101" in line, line
    # One of Jitsi's files served from behind the gate; the rest are still the gate's refusals.
    jitsi = line_of(report, "probe jitsi")
    assert jitsi.startswith("FAIL") and "/config.js -> 200" in jitsi, report
    assert "external_api.js" not in jitsi
    # The headers the front dropped.
    assert line_of(report, "hsts").startswith("FAIL"), report
    headers = line_of(report, "headers")
    assert headers.startswith("WARN") and "x-frame-options" in headers, report
    assert line_of(report, "csp").startswith("PASS"), report


def test_a_certificate_about_to_expire_is_a_warning(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, jitsi_web: Any
) -> None:
    """A 90-day certificate with 5 days left warns; one that lives a day by design does not
    (short-lived certificates are renewed with a share of their life left)."""
    site, processes = start_fronted_gate(
        tmp_path_factory.mktemp("expiring"),
        upstream=jitsi_web.url,
        certificate_days=5,
        certificate_age=85,
    )
    try:
        status, report = doctor_outside(tmp_path, "--url", site.url, "--cafile", str(site.cafile))
    finally:
        for proc in processes:
            stop_process(proc)
    assert status == 0, report
    line = line_of(report, "https")
    assert line.startswith("WARN") and "in 5 days" in line, report


def test_a_short_lived_certificate_is_not_a_warning(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, jitsi_web: Any
) -> None:
    site, processes = start_fronted_gate(
        tmp_path_factory.mktemp("short-lived"), upstream=jitsi_web.url, certificate_days=1
    )
    try:
        status, report = doctor_outside(tmp_path, "--url", site.url, "--cafile", str(site.cafile))
    finally:
        for proc in processes:
            stop_process(proc)
    assert status == 0 and line_of(report, "https").startswith("PASS"), report


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_nothing_listening_is_a_clear_failure(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"
    status, report = doctor_outside(tmp_path, "--url", url, "--timeout", "3")
    print(report)
    assert status == 1
    assert "Traceback" not in report
    assert re.search(r"^FAIL  (https|gate) .*(cannot connect|cannot fetch)", report, re.M), report
    # No probe is reported as passed against an address that never answered.
    assert "probe" not in report


@pytest.mark.parametrize(
    "url", ["https://h:99999", "https://h:abc", "https://[zz]", "https://127.0.0.1:{port}/meet"]
)
def test_a_bad_url_is_one_clear_failure(tmp_path: Path, url: str) -> None:
    status, report = doctor_outside(tmp_path, "--url", url.format(port=free_port()))
    assert status == 1 and "Traceback" not in report
    assert line_of(report, "url").startswith("FAIL"), report
    assert "probe" not in report and "https" not in verdicts(report)


def test_credentials_in_the_url_are_refused_not_printed_or_sent(
    tmp_path: Path, fronted: FrontedGate
) -> None:
    url = fronted.url.replace("https://", "https://admin:hunter2@")
    status, report = doctor_outside(tmp_path, "--url", url, "--cafile", str(fronted.cafile))
    assert status == 1 and "Traceback" not in report
    assert line_of(report, "url").startswith("FAIL") and "password" in report, report
    assert "hunter2" not in report and "admin" not in report
    # Nothing was asked of the front.
    assert "probe" not in report and "gate" not in verdicts(report)


def test_no_config_and_no_url_says_how_to_check_from_outside(tmp_path: Path) -> None:
    status, report = doctor_outside(tmp_path)
    assert status == 1 and report.startswith("FAIL  config")
    assert "--url" in report and "Traceback" not in report


def test_the_probes_cover_the_spellings_the_gate_refuses() -> None:
    """Doctor's probes include every fixed spelling the gate's own tests use (tests/spellings.py),
    so a front that forwards one of them around the gate is caught."""
    probed = set(BOSH_SPELLINGS) | set(WEBSOCKET_SPELLINGS)
    for spelling in (*ISSUE_SPELLINGS, *WELL_FORMED_SPELLINGS, *MALFORMED_SPELLINGS):
        assert spelling in probed, spelling
