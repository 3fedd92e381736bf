"""The Dockerfile's install step, done the same way here: a new virtual environment that sees
nothing of this machine's packages, `pip install .` of the project (no test extra), then every
module of `gateway` imported, `meetgate --help`, and a config-less `meetgate serve` that answers
its health page. An import that is not declared fails here, whatever the machine already has.
The wire guard's stanza reader (gateway/proxy/_reader.c) is compiled by that install, as the
Dockerfile requires: the test command installs gcc and libexpat1-dev first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
# What the Dockerfile copies into its build stage, and what its .dockerignore leaves out: a
# reader built in this working tree (pip install -e .) or a leftover build/ directory would
# otherwise stand in for the compilation the install is to prove.
SOURCES = ("pyproject.toml", "requirements.lock", "README.md", "gateway", "templates")
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build", "*.egg-info")


def exported(into: Path) -> Path:
    """The project's sources as the Dockerfile's COPY takes them, in a directory of their own."""
    into.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=NOT_COPIED)
        else:
            shutil.copy2(source, into / name)
    return into


pytestmark = pytest.mark.slow

# Imports every module below `gateway` (not just the packages' __init__), and says which failed.
IMPORT_ALL = """
import importlib, pkgutil, sys
import gateway
failed = []
names = ["gateway"] + [m.name for m in pkgutil.walk_packages(gateway.__path__, "gateway.")]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names), "modules")
if failed:
    print("\\n".join(failed))
    sys.exit(1)
"""


def clean_environment(home: Path) -> dict[str, str]:
    """The environment a new machine's shell would have: no PYTHONPATH, no user site, no venv."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "PIP_INDEX_URL")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(HOME=str(home), PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    base = tmp_path_factory.mktemp("clean-install")
    target = base / "venv"
    # The test run's own interpreter builds the environment, but none of its packages go in.
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(target)
    home = base / "home"
    home.mkdir()
    env = clean_environment(home)
    # As the Dockerfile does it: wheels only, the lock as constraints, the project not editable.
    install = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    install += ["--only-binary=:all:", "-c", str(LOCK), str(exported(base / "src"))]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    yield target, env


def test_the_environment_holds_only_what_the_project_declares(
    installed: tuple[Path, dict[str, str]],
) -> None:
    target, env = installed
    listed = subprocess.run(
        [str(target / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    # The test extra's tools are not there: the check below imports against the runtime set only.
    assert "pytest==" not in listed
    assert "meetgate==" in listed


def test_every_gateway_module_imports(installed: tuple[Path, dict[str, str]]) -> None:
    target, env = installed
    done = subprocess.run(
        [str(target / "bin" / "python"), "-c", IMPORT_ALL],
        env=env,
        cwd=target,  # not the checkout: the installed package, not the source tree, is imported
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) > 30


# Run in the new environment with -I (not the checkout, which may hold a build of its own): which
# reader the guard uses and from where, and what it makes of a stanza and of hostile input.
READER_CHECK = """
from gateway.proxy import _reader, stanzas
print(stanzas.READER, _reader.__file__)
message = b"<message to='room@conference.meet.example' type='groupchat'><body>hi</body></message>"
read = stanzas.parse_stanza(message, max_bytes=4096)
print(read.name, read.attributes["type"], read.body_bytes)
laughs = b"<!DOCTYPE m [<!ENTITY a 'aaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]><message>&b;</message>"
for hostile in (laughs, b"<message><body>\\xff</body></message>", b"<iq>" * 64, b"<message>"):
    print(stanzas.parse_stanza(hostile, max_bytes=4096).condition)
"""


def test_the_install_compiled_the_stanza_reader(installed: tuple[Path, dict[str, str]]) -> None:
    target, env = installed
    done = subprocess.run(
        [str(target / "bin" / "python"), "-I", "-c", READER_CHECK],
        env=env,
        cwd=target,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    reader, path = lines[0].split()
    assert reader == "compiled"
    assert Path(path).is_relative_to(target)
    assert Path(path).suffix == ".so"
    assert lines[1] == "message groupchat 2"
    assert lines[2:] == ["restricted-xml", "not-well-formed", "policy-violation", "not-well-formed"]


def test_meetgate_help_runs(installed: tuple[Path, dict[str, str]]) -> None:
    target, env = installed
    done = subprocess.run(
        [str(target / "bin" / "meetgate"), "--help"],
        env=env,
        cwd=target,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout


def test_config_less_serve_answers_its_health_page(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    target, env = installed
    port, admin_port = free_port(), free_port()
    serve_env = {
        **env,
        "MEETGATE_LISTEN__PORT": str(port),
        "MEETGATE_ADMIN__PORT": str(admin_port),
    }
    proc = start_process(
        [str(target / "bin" / "meetgate"), "serve"],
        tmp_path / "serve.log",
        env=serve_env,
        cwd=tmp_path,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or port_open(port),
            timeout=60,
            what="the config-less gateway to listen",
        )
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert proc.poll() is None, f"meetgate serve exited:\n{log}"
        answer = httpx.get(f"http://127.0.0.1:{port}/_meetgate/health", timeout=10, verify=TLS)
        assert answer.status_code == 200
        assert answer.text == "ok"
    finally:
        stop_process(proc)


def test_the_lock_pins_every_declared_dependency() -> None:
    """A dependency added to pyproject.toml without rerunning scripts/lock fails here, before a
    new machine resolves it to whatever is newest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pinned = {
        normalized(line.split("==")[0])
        for line in LOCK.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    names = [normalized(re.split(r"[^A-Za-z0-9._-]", spec, maxsplit=1)[0]) for spec in declared]
    assert len(names) > 20
    missing = [name for name in names if name not in pinned]
    assert missing == [], f"not in requirements.lock (run scripts/lock): {missing}"


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()
