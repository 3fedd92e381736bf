"""Importing the gate warns about nothing: Authlib's notice that it falls back from httpx2 to
httpx printed on every `meetgate serve` (issue 14), and no deprecation may creep in unseen."""

from __future__ import annotations

import subprocess
import sys

IMPORT_EVERY_MODULE = """
import importlib, pkgutil
import gateway
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    importlib.import_module(module.name)
print("imported", module.name)
"""


def test_importing_every_gateway_module_raises_no_deprecation_warning() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", IMPORT_EVERY_MODULE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "imported gateway." in result.stdout
    assert "deprecated" not in result.stderr.lower()


def test_the_sign_in_module_imports_authlib_without_its_httpx_warning() -> None:
    # Authlib turns its own deprecation warnings on ("always") when it is imported: without the
    # gate's filter the warning is printed however Python's defaults are set.
    result = subprocess.run(
        [sys.executable, "-c", "import gateway.web.signin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
