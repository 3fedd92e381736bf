"""Every front proxy in deploy/ carries the limits of Meetgate's connection guard, read from the
gate's own defaults (`LimitSettings()`): behind a front, every connection comes from a trusted
proxy, so the per-client limits are the front's to enforce. A default changed in
gateway/settings.py and not here fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.settings import LimitSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_SITES = sorted((DEPLOY / "systemd").glob("*.nginx.conf"))
CADDYFILES = [
    DEPLOY / "compose" / "Caddyfile",
    DEPLOY / "compose" / "Caddyfile.static-offload",
    DEPLOY / "kubernetes" / "overlays" / "static-offload" / "Caddyfile",
]
LIMITS = LimitSettings()


def seconds(value: float) -> str:
    assert value == int(value), "the fronts take whole seconds"
    return f"{int(value)}s"


def uncommented(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def server_blocks(text: str) -> list[str]:
    """The body of each top-level `server { … }` of an nginx site (braces balanced)."""
    blocks = []
    for match in re.finditer(r"^server\s*\{", text, re.MULTILINE):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                blocks.append(text[start:index])
                break
    return blocks


def directive(block: str, name: str) -> list[str]:
    """The values of `name` set directly in this block (not in a nested location)."""
    flat = re.sub(r"\{[^{}]*\}", "", block)
    return [m.group(1) for m in re.finditer(rf"^\s*{name}\s+([^;]+);", flat, re.MULTILINE)]


def test_the_fronts_are_all_here() -> None:
    assert len(NGINX_SITES) == 2
    assert all(path.exists() for path in CADDYFILES)


@pytest.mark.parametrize("site", NGINX_SITES, ids=lambda p: p.name)
def test_nginx_sites_mirror_the_gates_limits(site: Path) -> None:
    text = uncommented(site)
    zone = re.findall(r"^limit_conn_zone\s+\$binary_remote_addr\s+zone=(\w+):\w+;", text, re.M)
    assert len(zone) == 1, "one limit_conn_zone keyed by the client's address, in http context"
    blocks = server_blocks(text)
    assert len(blocks) == 2
    for block in blocks:
        assert directive(block, "client_header_timeout") == [seconds(LIMITS.header_read_seconds)]
        assert directive(block, "client_body_timeout") == [seconds(LIMITS.body_read_seconds)]
        assert directive(block, "limit_conn") == [f"{zone[0]} {LIMITS.max_connections_per_address}"]
        (buffers,) = directive(block, "large_client_header_buffers")
        number, size = buffers.split()
        assert size.endswith("k") and int(size[:-1]) * 1024 == LIMITS.max_header_bytes
        assert int(number) >= 1
        (keepalive,) = directive(block, "keepalive_timeout")
        assert 0 < int(keepalive.rstrip("s")) <= 75


@pytest.mark.parametrize("site", NGINX_SITES, ids=lambda p: p.name)
def test_nginx_sites_write_no_client_to_the_error_log(site: Path) -> None:
    """nginx's error log names the client's address and the request line (invite tokens,
    tickets) on every failed upstream request (level error) and client fault (info): each
    public server logs nginx's own serious faults only."""
    for block in server_blocks(uncommented(site)):
        (error_log,) = directive(block, "error_log")
        assert error_log.split()[-1] in {"crit", "alert", "emerg"}, error_log
        assert directive(block, "access_log") == ["off"]


def test_ingress_writes_no_client_down() -> None:
    ingress = yaml.safe_load((DEPLOY / "kubernetes/overlays/ingress/ingress.yaml").read_text())
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    assert 'error-log-level: "crit"' in (DEPLOY / "kubernetes" / "README.md").read_text()


@pytest.mark.parametrize("caddyfile", CADDYFILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_caddyfiles_mirror_the_gates_limits(caddyfile: Path) -> None:
    text = uncommented(caddyfile)
    global_options = text[: text.index("{$PUBLIC_DOMAIN}")]
    timeouts = re.search(r"^\t\ttimeouts \{\n(.*?)^\t\t\}", global_options, re.M | re.S)
    assert timeouts is not None, "servers { timeouts { … } } in the global options"
    options = dict(line.split() for line in timeouts.group(1).strip().splitlines())
    assert options["read_header"] == seconds(LIMITS.header_read_seconds)
    assert options["read_body"] == seconds(LIMITS.body_read_seconds)
    size = re.findall(r"^\t\tmax_header_size (\d+)KiB$", global_options, re.M)
    assert size == [str(LIMITS.max_header_bytes // 1024)]


def test_ingress_caps_connections_per_address() -> None:
    ingress = yaml.safe_load((DEPLOY / "kubernetes/overlays/ingress/ingress.yaml").read_text())
    annotations = ingress["metadata"]["annotations"]
    limit = annotations["nginx.ingress.kubernetes.io/limit-connections"]
    assert limit == str(LIMITS.max_connections_per_address)
    readme = (DEPLOY / "kubernetes" / "README.md").read_text()
    assert f'client-header-timeout: "{int(LIMITS.header_read_seconds)}"' in readme
    assert f'client-body-timeout: "{int(LIMITS.body_read_seconds)}"' in readme
    assert f'large-client-header-buffers: "4 {LIMITS.max_header_bytes // 1024}k"' in readme
