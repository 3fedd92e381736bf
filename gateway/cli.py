"""`meetgate …`: `serve`, `init` and `doctor` run locally; `room`, `invite`, `registration` and
`store` call the admin API; `evidence` reads the evidence log's files and checks its exports
(gateway/evidence/commands.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import json
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, urlencode

import httpx

from gateway import log_privacy
from gateway.errors import ConfigError
from gateway.evidence.commands import add_commands as add_evidence_commands
from gateway.host.audit_commands import add_commands as add_audit_commands
from gateway.i18n import LANGUAGES
from gateway.settings import Settings, find_config, load_settings
from gateway.subcommands import command

if TYPE_CHECKING:
    from gateway.edge.guard import Guarding

log = logging.getLogger("meetgate")

DURATION = re.compile(r"(\d+)([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class CliError(Exception):
    """A problem to tell the user in one line, then exit non-zero: 2, a usage error, a refusal
    (the admin API's, or not confirmed) or an error. Under --json it is also printed as JSON on
    stdout: `code` (the admin API's error code, or the CLI's own) and the `candidates` to choose
    from when a name names several."""

    exit_code = 2
    default_code = "refused"

    def __init__(
        self, message: str, *, code: str | None = None, candidates: Sequence[object] = ()
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.candidates = list(candidates)


class NothingMatched(CliError):
    """Nothing is what the command names (nobody in the room is WHO, no invite has the id): exit
    1, as grep's for no match."""

    exit_code = 1
    default_code = "not_found"


class AdminUnreachable(CliError):
    """The admin API does not answer (not started, wrong address): exit 3, worth a retry."""

    exit_code = 3
    default_code = "admin_unreachable"


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `2h`, `7d`, `1w`, or combinations like `1h30m`."""
    text = text.strip().lower()
    if not text or DURATION.sub("", text):
        raise CliError(f"cannot read the duration {text!r}: use e.g. 30m, 2h, 7d")
    return sum(int(n) * UNIT_SECONDS[unit] for n, unit in DURATION.findall(text))


def ephemeral_token_file() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "meetgate" / "ephemeral-admin.json"


# What a folder made for secrets holds is never committed by mistake.
SECRETS_GITIGNORE = "# Written by meetgate: everything in this folder is secret.\n*\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only. A folder made for it is private too,
    with a .gitignore that keeps all it holds out of git."""
    try:
        path.parent.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        pass
    else:
        (path.parent / ".gitignore").write_text(SECRETS_GITIGNORE, encoding="utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


# ---------------------------------------------------------------- init


CONFIG_TEMPLATE = """\
# Meetgate configuration, written by `meetgate init`. Keep this file private (mode 0600).
# Every key can be overridden by an environment variable: [tickets] ttl_seconds is
# MEETGATE_TICKETS__TTL_SECONDS. See docs/configuration.md.

# The address attendees use. With https://, cookies are __Host- prefixed and Secure.
public_url = "{public_url}"
log_level = "info"

[listen]
host = "127.0.0.1"
port = 8000

[admin]
# The admin API listens here; keep it on loopback or a private network.
host = "127.0.0.1"
port = 8001
token = "{admin_token}"

[store]
# memory:// (one process) or redis://host:6379/0 (production, any number of replicas)
url = "{store_url}"

[jitsi]
# Jitsi's web server, reachable only by Meetgate.
upstream = "{upstream}"
# Must match prosody's XMPP domain, app_id and accepted audience (docs/jitsi.md).
xmpp_domain = "meet.jitsi"
app_id = "meetgate"
audience = "jitsi"

[tickets]
{tickets}
[admission]
ttl_seconds = 43200
# Keyed hash for pseudonymous identities; changing it changes every identity.
pseudonym_key = "{pseudonym_key}"
"""


RS256_TICKETS = """\
# RS256: Meetgate signs with the private key below. Prosody fetches its public half from
# Meetgate's key endpoint (asap_key_server = "<Meetgate's address>/_meetgate/keys", docker:
# JWT_ASAP_KEYSERVER) and holds no secret. Rotating keys: docs/jitsi.md.
algorithm = "RS256"
ttl_seconds = 120
# A ticket's nbf lies this far in the past: prosody's clock may be a little behind (keep it in
# sync all the same).
clock_skew_seconds = 30

# The first key signs; list the next key first to rotate (docs/jitsi.md). Each key's id (kid)
# is derived from the key itself, so a new key always gets a new id.
[[tickets.keys]]
# Inline, so this one private file is the whole config (a systemd credential, for one); or
# private_key_file = "<path>", relative to this file.
private_key = \"\"\"
{private_pem}\"\"\"
"""

HS256_TICKETS = """\
algorithm = "HS256"
ttl_seconds = 120
# A ticket's nbf lies this far in the past: prosody's clock may be a little behind (keep it in
# sync all the same).
clock_skew_seconds = 30

# The first key signs; list the next key first to rotate (docs/jitsi.md).
[[tickets.keys]]
# The same secret is prosody's app_secret (JWT_APP_SECRET in docker-jitsi-meet).
secret = "{secret}"
"""


def command_init(args: argparse.Namespace) -> int:
    from gateway.ticket_keys import generate_private_pem

    path = Path(args.path)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; pass --force to overwrite it (its secrets are lost)")
    if args.algorithm == "RS256":
        # PEM is base64 lines between dashes: nothing a TOML multi-line string would escape.
        tickets = RS256_TICKETS.format(private_pem=generate_private_pem().decode("ascii"))
    else:
        tickets = HS256_TICKETS.format(secret=secrets.token_urlsafe(48))
    text = CONFIG_TEMPLATE.format(
        public_url=args.public_url.rstrip("/"),
        admin_token=secrets.token_urlsafe(32),
        store_url=args.store,
        upstream=args.upstream.rstrip("/"),
        tickets=tickets,
        pseudonym_key=secrets.token_urlsafe(32),
    )
    write_private(path, text)
    try:
        settings = load_settings(path, environ={}, allow_ephemeral=False)
    except ConfigError as exc:
        path.unlink()
        raise CliError("the values given do not make a valid config:\n" + str(exc)) from exc
    what = "and an RS256 key pair" if args.algorithm == "RS256" else "and an HS256 ticket secret"
    print(f"wrote {path} (mode 0600) with fresh secrets {what}")
    work_tree = git_work_tree(path.parent)
    if work_tree is not None and not git_ignores(path):
        print(
            f"{path} holds secrets and lies in the git work tree {work_tree}: keep it out of"
            f" commits (add its name to {work_tree / '.gitignore'}), or write it to a folder of"
            " its own with --path secrets/meetgate.toml (init then git-ignores that folder)"
        )
    print(f"ticket key id (kid): {settings.tickets.signing_kid}")
    print(f"start the gateway with: meetgate serve --config {path}")
    if args.algorithm == "RS256":
        print(
            "point prosody's asap_key_server (docker: JWT_ASAP_KEYSERVER) at"
            " http://<this host as prosody reaches it>:<listen port>/_meetgate/keys"
        )
    return 0


def git_work_tree(folder: Path) -> Path | None:
    """The git work tree `folder` lies in, if any."""
    for candidate in (folder.resolve(), *folder.resolve().parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def git_ignores(path: Path) -> bool:
    """Does git ignore `path`? False when git cannot say (not installed, say)."""
    try:
        found = subprocess.run(
            ["git", "check-ignore", "--quiet", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return found.returncode == 0


# ---------------------------------------------------------------- serve


async def _serve(settings: Settings) -> None:
    from gateway import serving

    # Every listening socket is bound first: a taken port ends the start before anything
    # listens (gateway/serving.py).
    gate_sockets = serving.bind(settings.listen.host, settings.listen.port, "[listen] host, port")
    try:
        admin_sockets = serving.bind(settings.admin.host, settings.admin.port, "[admin] host, port")
    except serving.StartFailure:
        serving.close(gate_sockets)
        raise
    try:
        await _serve_on(settings, gate_sockets, admin_sockets)
    finally:
        serving.close([*gate_sockets, *admin_sockets])


def _serve_workers(settings: Settings) -> int:
    """Several serving processes under one supervisor (gateway/workers.py)."""
    from gateway import serving, workers

    admin_sockets = serving.bind(settings.admin.host, settings.admin.port, "[admin] host, port")
    try:
        serving.listen(admin_sockets, "[admin] host, port")

        def run_worker(
            index: int,
            gate_sockets: list[socket.socket],
            admin: list[socket.socket],
            supervisor: int,
        ) -> int:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_serve_on(settings, gate_sockets, admin, supervisor=supervisor))
            return 0

        return workers.supervise(
            settings.listen.host,
            settings.listen.port,
            admin_sockets,
            settings.listen.workers,
            run_worker,
        )
    finally:
        serving.close(admin_sockets)


async def _watch_supervisor(supervisor: int) -> None:
    """A worker whose supervisor is gone (killed with -9) stops as on SIGTERM."""
    while os.getppid() == supervisor:  # noqa: ASYNC110 (no event says a parent is gone)
        await asyncio.sleep(1.0)
    log.warning("the supervisor (process %d) is gone: stopping", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


async def _serve_on(
    settings: Settings,
    gate_sockets: list[socket.socket],
    admin_sockets: list[socket.socket],
    *,
    supervisor: int | None = None,
) -> None:
    from gateway import serving
    from gateway.access_log import AccessLog
    from gateway.app import create_admin, create_app
    from gateway.edge.guard import Guarding
    from gateway.edge.server import HttpServer, ServerLimits
    from gateway.metrics import Metrics
    from gateway.store import open_store

    store = await open_store(settings.store.url, settings.store_options())
    try:
        if settings.store.require_at_start:
            await serving.require_store(store, settings.store.url)
        metrics = Metrics()
        gate = create_app(settings, store, metrics)
        admin = create_admin(settings, store, metrics, gate.evidence, gate=gate)
    except BaseException:
        await store.close()
        raise
    # What start-up made (modules, templates, the apps) lives as long as the process: kept out
    # of the collector's full passes, which a flood's garbage would otherwise make long.
    gc.collect()
    gc.freeze()
    limits = ServerLimits(
        max_header_bytes=settings.limits.max_header_bytes,
        max_websocket_message_bytes=settings.limits.max_websocket_message_bytes,
    )
    addresses = settings.logging.client_addresses
    guarding = connection_guard(settings)
    metrics.watch_connections(guarding)
    public = HttpServer(
        AccessLog(gate, client_addresses=addresses), guarding=guarding, limits=limits
    )
    # The admin API's clients are the admins' own tools: the same deadlines and head cap, and no
    # per-address cap (every client may be 127.0.0.1).
    admin_guarding = Guarding(
        dataclasses.replace(
            guarding.rules, max_connections_per_address=guarding.rules.max_connections
        )
    )
    admin_server = HttpServer(
        AccessLog(admin, client_addresses=addresses), guarding=admin_guarding, limits=limits
    )
    token_file: Path | None = None
    watching: asyncio.Task[None] | None = None
    try:
        serving.listen(gate_sockets, "[listen] host, port")
        serving.listen(admin_sockets, "[admin] host, port")
        log.info(
            "gate on http://%s (public URL %s), admin API on http://%s, store %s",
            serving.show_address(settings.listen.host, settings.listen.port),
            settings.public_url,
            serving.show_address(settings.admin.host, settings.admin.port),
            store_for_log(settings.store.url),
        )
        if settings.ephemeral:
            token_file = ephemeral_token_file()
            admin_url = f"http://{settings.admin.host}:{settings.admin.port}"
            write_private(
                token_file,
                json.dumps({"url": admin_url, "token": settings.admin.token.get_secret_value()}),
            )
        await gate.start()
        if supervisor is not None:
            watching = asyncio.create_task(_watch_supervisor(supervisor))
        await serving.run(
            gate,
            public,
            gate_sockets,
            admin_server,
            admin_sockets,
            shutdown_seconds=settings.listen.shutdown_seconds,
        )
    finally:
        if watching is not None:
            watching.cancel()
        if token_file is not None:
            with contextlib.suppress(FileNotFoundError):
                token_file.unlink()
        await gate.aclose()
        await store.close()


def connection_guard(settings: Settings) -> Guarding:
    """The gate listener's slow-client rules (gateway/edge/guard.py), with the file descriptors
    they need: the soft limit is raised toward the hard one if `max_connections` (and the
    upstream connection each may hold) would not fit, and a warning says so if it still does not."""
    from gateway.client_address import parse_networks
    from gateway.edge.guard import Guarding, Rules

    limits = settings.limits
    needed = 2 * limits.max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        if soft < needed:
            log.warning(
                "[limits] max_connections=%d needs about %d open files, and this process may"
                " open %d: lower it, or raise the limit (LimitNOFILE= in systemd, ulimit -n)",
                limits.max_connections,
                needed,
                soft,
            )
    return Guarding(Rules.of(limits, parse_networks(settings.trusted_proxies)))


def store_for_log(url: str) -> str:
    """The store's URL as logged: without a user, a password or a query (a Sentinel URL may
    carry `sentinel_password=` there)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2].partition('?')[0]}"


def command_serve(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.workers is not None:
        environ["MEETGATE_LISTEN__WORKERS"] = str(args.workers)
    settings = load_settings(Path(args.config) if args.config else None, environ=environ)
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The libraries' per-connection and request lines (a WebSocket's path with its ticket, the
    # peer's address, upstream URLs) never reach the log; see gateway/log_privacy.py.
    log_privacy.install(logging.getLogger().handlers, level)
    if settings.ephemeral:
        banner = "!" * 72
        log.warning(
            "\n%s\nNO CONFIG FILE: running on the in-memory store with EPHEMERAL secrets.\n"
            "Rooms, invites and admissions vanish when this process stops, and tickets\n"
            "are signed with a key no Jitsi knows. For a real deployment run\n"
            "`meetgate init` and then `meetgate serve --config meetgate.toml`.\n"
            "The admin token for this run is in %s (mode 0600);\n"
            "`meetgate room …` and `meetgate invite …` find it there.\n"
            "Join links start with %s (MEETGATE_PUBLIC_URL to change it).\n%s",
            banner,
            ephemeral_token_file(),
            settings.public_url,
            banner,
        )
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from gateway.serving import StartFailure

    try:
        if settings.listen.workers > 1:
            return _serve_workers(settings)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings))
    except StartFailure as exc:
        raise CliError(str(exc)) from exc
    return 0


# ---------------------------------------------------------------- admin API client


# What to do next, after the admin API's refusal (its `error` code); a call may add its own.
NEXT_STEPS = {
    "admin_auth_failed": "Give the token the server runs with: --admin-token, MEETGATE_ADMIN__TOKEN"
    " or --config with its [admin] token.",
    "room_not_found": "`meetgate room list` shows the rooms; `meetgate room create NAME` makes"
    " one.",
    "room_exists": "Choose another name; `meetgate room list` shows those taken.",
    "store_unavailable": "The store does not answer: `meetgate doctor` says why; try again then.",
    "room_moved": "`meetgate room audit ROOM` still shows the old room's log, and `meetgate room"
    " unban ROOM WHO` lifts a ban made there.",
}
# Errors of the admin API worth a retry, as an unreachable one: exit 3.
RETRY_ERRORS = ("store_unavailable",)


class AdminClient:
    def __init__(self, url: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10, trust_env=False
        )

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        options: dict[str, str] | None = None,
        next_steps: dict[str, str] | None = None,
        matching: bool = False,
    ) -> Any:
        """The admin API's answer; CliError with its message and what to do next if it refused.
        `options`: the command-line option each key of `body` came from, to name a refused value
        as the user wrote it; `next_steps`: this call's own advice by error code; `matching`:
        the call looks someone or something up, and its `not_found` is NothingMatched (exit 1).
        AdminUnreachable if the admin API does not answer."""
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise AdminUnreachable(
                f"cannot reach the admin API at {self._client.base_url}: is `meetgate serve`"
                " running? (else pass --config, or --admin-url and --admin-token)"
            ) from exc
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError as exc:
            raise CliError(
                f"{self._client.base_url} answered {response.status_code} without JSON: is it"
                " the admin API ([admin] host and port), not the gate?"
            ) from exc
        if response.is_error:
            # Every error of the admin API is a Problem; its message names each refused value.
            if isinstance(payload, dict) and "message" in payload:
                message = str(payload["message"])
                fields = payload.get("fields")
                # request_invalid (the schema's refusals) and invalid_input (Meetgate's rules,
                # a room change's) name the values they refuse.
                if fields and options is not None:
                    message = "; ".join(refused_option(field, options) for field in fields)
                step = {**NEXT_STEPS, **(next_steps or {})}.get(str(payload.get("error")))
                matched_nothing = matching and payload.get("error") == "not_found"
                refusal: type[CliError] = NothingMatched if matched_nothing else CliError
                if payload.get("error") in RETRY_ERRORS:
                    refusal = AdminUnreachable
                code = str(payload.get("error"))
                raise refusal(f"{message}\n{step}" if step else message, code=code)
            raise CliError(f"the admin API answered {response.status_code}")
        return payload


def refused_option(field: Any, options: dict[str, str]) -> str:
    """One value the admin API refused, named as the user gave it: `--uses: Input should be
    greater than or equal to 1`, not `body.max_uses: …`."""
    where = str(field.get("where", "")) if isinstance(field, dict) else ""
    problem = str(field.get("problem", "")) if isinstance(field, dict) else ""
    key = where.removeprefix("body.").removeprefix("query.").partition(".")[0]
    return f"{options.get(key, key)}: {problem}" if key and key != "body" else problem


def admin_client(args: argparse.Namespace) -> AdminClient:
    """Find the admin API: flags, then the config file, then a running ephemeral server."""
    url: str | None = args.admin_url
    token: str | None = args.admin_token or os.environ.get("MEETGATE_ADMIN__TOKEN")
    config = find_config(Path(args.config) if args.config else None, os.environ)
    if config is not None and (url is None or token is None):
        try:
            settings = load_settings(config, allow_ephemeral=False)
        except ConfigError as exc:
            raise CliError(str(exc)) from exc
        url = url or f"http://{settings.admin.host}:{settings.admin.port}"
        token = token or settings.admin.token.get_secret_value()
    if url is None or token is None:
        try:
            saved = json.loads(ephemeral_token_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        url = url or saved.get("url")
        token = token or saved.get("token")
    if not url or not token:
        raise CliError(
            "no admin API found: start `meetgate serve`, or pass --config, or"
            " --admin-url and --admin-token"
        )
    return AdminClient(url, token)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


# `meetgate room … --language`: the pages' languages by tag, and the word for no default.
LANGUAGE_TAGS = [language.tag for language in LANGUAGES]
NO_LANGUAGE = "none"

# The options of `meetgate room policy` that each key of the admin API's policy comes from.
POLICY_OPTIONS = {
    "invite": "--no-invite",
    "oidc": "--oidc",
    "oidc_providers": "--oidc",
    "email_code": "--email-code",
    "allowed_emails": "--allow-email",
    "allowed_domains": "--allow-domain",
    "allowed_groups": "--allow-group",
    "lobby": "--lobby",
    "host_emails": "--host-email",
}


# The options of `meetgate room set` that each key of the admin API's room change comes from.
ROOM_SET_OPTIONS = {
    "locked": "--lock/--unlock",
    "pow_required": "--challenge",
    "language": "--language",
    "chat_per_10s": "--chat-per-10s",
    "chat_burst": "--chat-burst",
    "chat_max_bytes": "--chat-max-bytes",
    "guard_strikes": "--strikes",
    "quiet_private_to_hosts": "--private-to-hosts",
    "registration": "--registration",
    "auto_approve_domains": "--auto-approve-domain",
    "auto_approve_emails": "--auto-approve-email",
    "series": "--series",
    "starts_at": "--starts-at",
    "ends_at": "--ends-at",
}
# `--series none`, `--starts-at none`: no series, no time.
NO_VALUE = "none"


def _moment(text: str) -> float | str:
    """--starts-at, --ends-at: passed on for the admin API to read (ISO 8601 with an offset, or
    seconds since the epoch); `none` clears."""
    if text.strip().lower() == NO_VALUE:
        return ""
    return float(text) if text.isdigit() else text


def _shown_moment(moment: float | None) -> str:
    """A meeting's time in this machine's zone, with its offset (as --starts-at takes it)."""
    if moment is None:
        return "not set"
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="minutes")


def registration_state(room: dict[str, Any]) -> str:
    """A room's registration settings as the admin API gives them, in a line (never an
    address: the API only counts them)."""
    count = room["auto_approve_email_count"]
    approving = [*room["auto_approve_domains"]]
    if count:
        approving.append(f"{count} address" if count == 1 else f"{count} addresses")
    return ", ".join(
        [
            "registration on" if room["registration"] else "registration off",
            f"auto-approved: {', '.join(approving)}" if approving else "no auto-approval",
            f"series {room['series']}" if room["series"] else "no series",
            f"starts {_shown_moment(room['starts_at'])}",
            f"ends {_shown_moment(room['ends_at'])}",
        ]
    )


def registration_page(room: dict[str, Any]) -> list[str]:
    """The page to announce while the room takes registrations, as a line (none otherwise)."""
    page = room.get("registration_page")
    return [f"  announce the registration page: {page}"] if page else []


def registration_change(args: argparse.Namespace) -> dict[str, Any]:
    """What `meetgate room set`'s registration options ask of the admin API's room change."""
    change: dict[str, Any] = {}
    if args.registration is not None:
        change["registration"] = args.registration == "on"
    if args.no_auto_approve:
        if args.auto_approve_domain is not None or args.auto_approve_email is not None:
            raise CliError(
                "--no-auto-approve empties both lists: give it alone, or give"
                " --auto-approve-domain and --auto-approve-email (each replaces its list)"
            )
        change["auto_approve_domains"] = []
        change["auto_approve_emails"] = []
    if args.auto_approve_domain is not None:
        change["auto_approve_domains"] = args.auto_approve_domain
    if args.auto_approve_email is not None:
        change["auto_approve_emails"] = args.auto_approve_email
    if args.series is not None:
        change["series"] = "" if args.series.strip().lower() == NO_VALUE else args.series
    if args.starts_at is not None:
        change["starts_at"] = args.starts_at
    if args.ends_at is not None:
        change["ends_at"] = args.ends_at
    return change


def chat_state(room: dict[str, Any]) -> str:
    """A room's chat rules as the admin API gives them, in a line."""
    chat = room["chat"]

    def value(key: str, unit: str = "") -> str:
        return f"{chat[key]}{unit}" if chat[key] else "default"

    strikes = chat["guard_strikes"]
    removal = "never" if strikes == 0 else str(strikes)
    private = "allowed" if chat["quiet_private_to_hosts"] else "refused"
    return ", ".join(
        [
            "quiet mode on (only hosts can chat)" if room["quiet"] else "quiet mode off",
            f"{value('chat_per_10s')} messages per 10 s",
            f"burst {value('chat_burst')}",
            f"longest {value('chat_max_bytes', ' bytes')}",
            f"removal after {removal} refused",
            f"private messages to hosts when quiet {private}",
        ]
    )


def room_description(room: dict[str, Any]) -> str:
    """`meetgate room show`: a room's settings as the admin API gives them, a line each."""
    rules = room["rules"]
    ways = [way for way in ("invite", "oidc", "email_code", "lobby") if rules[way]]
    state = "locked" if room["locked"] else "open"
    if room["approval_required"]:
        state += " (locked down: only hosts enter on their own)"
    lines = [
        f"room {room['name']} ({room['title']}), created {_when(room['created_at'])}",
        f"  {state}; proof-of-work {'on' if room['pow_required'] else 'automatic'}",
        f"  ways in: {', '.join(ways)}",
        f"  pages in {room['language']} by default"
        if room["language"]
        else "  no default language",
        f"  chat: {chat_state(room)}",
        f"  {registration_state(room)}",
        *registration_page(room),
    ]
    if room["moved_to"]:
        lines.append(f"  the meeting moved to room {room['moved_to']}")
    return "\n".join(lines)


def _strikes(text: str) -> int | str:
    """--strikes: a count, 'never' (0) or 'default' (the gate's)."""
    if text in ("default", "never"):
        return 0 if text == "never" else "default"
    if not text.isdigit():
        raise argparse.ArgumentTypeError("a whole number, 'never' or 'default'")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("a whole number (0: the gate's default)")
    return int(text)


def command_room(args: argparse.Namespace) -> int:
    if args.action in EMERGENCY_ACTIONS:
        return room_emergency(args)
    client = admin_client(args)
    if args.action == "create":
        room = client.call(
            "POST",
            "/api/v1/rooms",
            {"name": args.name, "title": args.title or "", "language": args.language},
            options={"name": "the room's name", "title": "--title", "language": "--language"},
        )
        language = f", pages in {room['language']} by default" if room["language"] else ""
        print(f"created room {room['name']} ({room['title']}){language}")
    elif args.action == "list":
        rooms = client.call("GET", "/api/v1/rooms")
        if not rooms:
            print("no rooms")
        for room in rooms:
            print(f"{room['name']:<32} {room['title']}  (created {_when(room['created_at'])})")
    elif args.action == "set":
        change: dict[str, Any] = {}
        if args.lock is not None:
            change["locked"] = args.lock
        if args.challenge is not None:
            change["pow_required"] = args.challenge == "on"
        if args.language is not None:
            change["language"] = "" if args.language == NO_LANGUAGE else args.language
        for key, value in (
            ("chat_per_10s", args.chat_per_10s),
            ("chat_burst", args.chat_burst),
            ("chat_max_bytes", args.chat_max_bytes),
            ("guard_strikes", args.strikes),
        ):
            if value is not None:
                change[key] = value
        if args.private_to_hosts is not None:
            change["quiet_private_to_hosts"] = args.private_to_hosts == "on"
        change.update(registration_change(args))
        if not change:
            raise CliError(
                "nothing to change: give --lock, --unlock, --challenge on|off, --language,"
                " --chat-per-10s, --chat-burst, --chat-max-bytes, --strikes,"
                " --private-to-hosts on|off, --registration on|off, --auto-approve-domain,"
                " --auto-approve-email, --no-auto-approve, --series, --starts-at or --ends-at"
            )
        if args.lock:
            confirm(f"Lock room {args.name}: nobody new gets in (hosts excepted)?", args.yes)
        room = client.call("PATCH", f"/api/v1/rooms/{args.name}", change, options=ROOM_SET_OPTIONS)
        state = [
            "locked" if room["locked"] else "open",
            "proof-of-work on" if room["pow_required"] else "proof-of-work automatic",
            f"pages in {room['language']} by default"
            if room["language"]
            else "no default language",
        ]
        print(f"room {room['name']}: {', '.join(state)}")
        print(f"  chat: {chat_state(room)}")
        print(f"  {registration_state(room)}")
        for line in registration_page(room):
            print(line)
    elif args.action == "show":
        room = client.call("GET", _room_path(args.name))
        if args.json:
            print(json.dumps(room, ensure_ascii=False, indent=2))
        else:
            print(room_description(room))
    elif args.action == "quiet":
        room = client.call(
            "PATCH",
            f"/api/v1/rooms/{args.name}",
            {"quiet": args.state == "on"},
            options={"quiet": "on|off"},
        )
        print(f"room {room['name']}: chat: {chat_state(room)}")
    elif args.action == "policy":
        body = {
            "invite": not args.no_invite,
            "oidc": bool(args.oidc),
            "oidc_providers": [p for p in (args.oidc or []) if p != "any"],
            "email_code": args.email_code,
            "allowed_emails": args.allow_email,
            "allowed_domains": args.allow_domain,
            "allowed_groups": args.allow_group,
            "lobby": args.lobby,
            "host_emails": args.host_email,
        }
        room = client.call("PUT", f"/api/v1/rooms/{args.name}/policy", body, options=POLICY_OPTIONS)
        rules = room["rules"]
        ways = [way for way in ("invite", "oidc", "email_code", "lobby") if rules[way]]
        print(f"room {room['name']}: ways in: {', '.join(ways)}")
    elif args.action == "check-email":
        # The API never lists a policy's addresses; it says whether it lists one.
        listed = client.call(
            "GET", f"/api/v1/rooms/{args.name}/policy/emails/{quote(args.address, safe='')}"
        )
        lists = [what for what in ("allowed", "host") if listed[what]]
        if not lists:
            # Exit 1, as grep's for no match: an error (no such room, no API) exits 2.
            print(f"room {args.name}'s policy lists no such address", file=sys.stderr)
            return 1
        print(f"room {args.name}'s policy lists it: {' and '.join(lists)}")
    elif args.action == "delete":
        confirm(
            f"Delete room {args.name}: everyone in it is removed at once, its invites and log"
            " are gone?",
            args.yes,
        )
        client.call("DELETE", f"/api/v1/rooms/{args.name}")
        print(f"deleted room {args.name}; its invites, admissions and log are gone (bans stay)")
    return 0


# ---------------------------------------------------------------- registrations

# `meetgate registration list|approve|deny` (docs/operations.md, "Registration"): a page at a
# time, never a whole list (there is no export).
REGISTRATION_PAGE = 20
REGISTRATION_STATES = ["waiting", "approved", "denied"]
REGISTRATION_FLAGS = ["seen_address", "seen_domain", "looks_like", "burst", "updated"]
MIN_ID_PREFIX = 8
REGISTRATION_ID = re.compile(r"[0-9a-fA-F]{8,32}")
REGISTRATION_EXIT_CODES = """\
exit codes:
  0  done
  1  nothing matched: no such page, no waiting registration for the filter, or an ID
     that names none, several, or one answered already (the others are answered)
  2  bad usage, not confirmed, or refused by the admin API (no such room, a meeting
     that moved on or is over, no SMTP server)
  3  the admin API cannot be reached, or its store cannot answer: worth a retry"""
ANSWER_OPTIONS = {"ids": "ID", "filter": "--flag"}


def _shown_text(text: str, most: int) -> str:
    """A registrant's words on one terminal line: no control character, at most `most`."""
    flat = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text).strip()
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def _registrations_path(room: str, *rest: str) -> str:
    return _room_path(room, "registrations", *rest)


def _registration_flags(registration: dict[str, Any]) -> str:
    """A registration's flags on one line, looks_like with whom it resembles when known:
    'looks_like Ada Lovelace (host)'."""
    shown = []
    resembles = registration.get("resembles")
    for flag in registration["flags"]:
        if flag == "looks_like" and isinstance(resembles, dict):
            name = _shown_text(str(resembles.get("name", "")), 40)
            flag = f"looks_like {name} ({resembles.get('kind', '')})"
        shown.append(flag)
    return ",".join(shown) or "-"


def registration_list(client: AdminClient, args: argparse.Namespace) -> int:
    offset = (args.page - 1) * REGISTRATION_PAGE
    query = {"offset": str(offset), "limit": str(REGISTRATION_PAGE)}
    if args.state:
        query["state"] = args.state
    if args.flag:
        query["flag"] = args.flag
    page = client.call(
        "GET",
        _registrations_path(args.name) + "?" + urlencode(query),
        options={"state": "--state", "flag": "--flag", "offset": "--page"},
    )
    pages = max(1, -(-page["total"] // REGISTRATION_PAGE))
    if not page["items"] and args.page > 1 and page["total"]:
        raise NothingMatched(f"there is no page {args.page}: {pages} page(s)")
    if args.json:
        print(json.dumps(page, ensure_ascii=False, indent=2))
        return 0
    if page["items"]:
        rows = [
            [
                r["id"][:12],
                _shown_text(r["name"], 40),
                r["domain"],
                _registration_flags(r),
                "invitation pending" if r.get("invitation_pending") else r["state"],
                _shown_text(r["note"], 40),
            ]
            for r in page["items"]
        ]
        print_table(["ID", "NAME", "DOMAIN", "FLAGS", "STATE", "NOTE"], rows)
    states = ", ".join(f"{count} {state}" for state, count in page["counts"]["states"].items())
    matching = f"{page['total']} matching"
    print(f"page {args.page} of {pages}: {matching}; in room {args.name}: {states}")
    return 0


def _answer_body(args: argparse.Namespace) -> dict[str, Any]:
    filtering = getattr(args, "all_waiting", False) or args.flag is not None
    if args.ids and filtering:
        raise CliError("give IDs, or a filter (--all-waiting, --flag), not both")
    if not args.ids and not filtering:
        what = "IDs, --all-waiting or --flag" if args.action == "approve" else "IDs or --flag"
        raise CliError(f"which registrations? give {what}")
    for given in args.ids:
        if REGISTRATION_ID.fullmatch(given) is None:
            raise CliError(
                f"ID {given!r}: a registration's id, or {MIN_ID_PREFIX} or more of its first"
                f" hex digits, as `meetgate registration list {args.name}` shows it"
            )
    if args.ids:
        return {"ids": args.ids}
    return {"filter": {"state": "waiting", "flag": args.flag}}


def registration_answer(client: AdminClient, args: argparse.Namespace) -> int:
    """approve, deny: asks first (an e-mail cannot be called back), unless --yes."""
    body = _answer_body(args)
    verb = args.action
    consequence = (
        "each is sent a personal invitation by e-mail"
        if verb == "approve"
        else "their addresses are dropped, and they are not told"
    )
    if "filter" in body:
        query = {"state": "waiting", "limit": "1", **({"flag": args.flag} if args.flag else {})}
        waiting = client.call("GET", _registrations_path(args.name) + "?" + urlencode(query))
        count = waiting["total"]
        flagged = f" flagged {args.flag}" if args.flag else ""
        if not count:
            raise NothingMatched(f"no waiting registration{flagged} in room {args.name}")
        question = f"{verb.capitalize()} all {count} waiting registration(s){flagged}"
    else:
        question = f"{verb.capitalize()} {len(args.ids)} registration(s)"
    confirm(f"{question} in room {args.name}: {consequence}?", args.yes)
    result = client.call("POST", _registrations_path(args.name, verb), body, options=ANSWER_OPTIONS)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        done = "approved" if verb == "approve" else "denied"
        print(f"{done} {result['answered']} registration(s) in room {args.name}")
        if result["batch"]:
            print(
                f"invitations queued in batch {result['batch']}: `meetgate invite progress"
                f" {result['batch']} --follow` shows how sending goes"
            )
    for refused in result["refused"]:
        print(f"not {verb}d: {refused['id']}: {refused['message']}", file=sys.stderr)
    return 1 if result["refused"] or not result["answered"] else 0


def command_registration(args: argparse.Namespace) -> int:
    if args.action != "list":
        refuse_unaskable(f"meetgate registration {args.action}", args.yes)
    client = admin_client(args)
    if args.action == "list":
        return registration_list(client, args)
    return registration_answer(client, args)


def _page_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a page number, 1 or more")
    return int(text)


def add_registration_commands(sub: Any, client: list[argparse.ArgumentParser]) -> None:
    """`meetgate registration list|approve|deny`."""
    registration = command(
        sub,
        "registration",
        "review a room's registrations: list a page, approve, deny",
        ["meetgate registration list conf", "meetgate registration approve conf 3f9c2a1b"],
    )
    actions = registration.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the admin API's JSON answer")

    def action(name: str, summary: str, examples: list[str]) -> Any:
        made = command(
            actions,
            name,
            summary,
            examples,
            [*client, output],
            description=f"{summary[0].upper()}{summary[1:]}.\n\n{REGISTRATION_EXIT_CODES}",
        )
        made.add_argument("name", help="the room")
        return made

    listing = action(
        "list",
        f"a page of a room's registrations ({REGISTRATION_PAGE} a page, oldest first): id,"
        " name, the address's domain (never the address), flags, state, note; there is no"
        " export",
        [
            "meetgate registration list conf",
            "meetgate registration list conf --state waiting --flag burst --page 2",
            "meetgate registration list conf --json",
        ],
    )
    listing.add_argument("--state", choices=REGISTRATION_STATES, help="only those in this state")
    listing.add_argument("--flag", choices=REGISTRATION_FLAGS, help="only those with this flag")
    listing.add_argument("--page", type=_page_number, default=1, metavar="N", help="which page (1)")
    for verb, summary, examples in (
        (
            "approve",
            "approve registrations: each person is sent a personal invitation by e-mail (asks"
            " first)",
            [
                "meetgate registration approve conf 3f9c2a1b 77d0e4c5",
                "meetgate registration approve conf --all-waiting --yes",
                "meetgate registration approve conf --all-waiting --flag seen_domain",
            ],
        ),
        (
            "deny",
            "deny registrations: nobody is told, their addresses are dropped (asks first)",
            [
                "meetgate registration deny conf 3f9c2a1b",
                "meetgate registration deny conf --flag burst",
            ],
        ),
    ):
        answer = action(verb, summary, examples)
        answer.add_argument(
            "ids",
            nargs="*",
            metavar="ID",
            help=f"a registration's id, or its first {MIN_ID_PREFIX} or more hex digits (as"
            " `list` shows them)",
        )
        if verb == "approve":
            answer.add_argument(
                "--all-waiting",
                action="store_true",
                help="every waiting registration (with --flag: those with the flag)",
            )
        answer.add_argument(
            "--flag", choices=REGISTRATION_FLAGS, help="every waiting registration with this flag"
        )
        answer.add_argument(
            "--yes", action="store_true", help="do it without asking (needed without a terminal)"
        )
    registration.set_defaults(func=command_registration)


# ---------------------------------------------------------------- in an emergency

# `meetgate room …` that do what a host does on the dashboard (docs/operations.md, "In an
# emergency"). Exit codes: 0 done, 1 nothing matched, 2 usage, refusal or error, 3 no admin API.
EMERGENCY_ACTIONS = ("roster", "remove", "unban", "lockdown", "unlock", "move", "audit")
EXIT_CODES = """\
exit codes:
  0  done
  1  nothing matched (WHO is not in the room, or not banned there; no invite)
  2  bad usage, not confirmed, or refused by the admin API (no such room; a name
     that names several people: their ids are listed; a meeting that moved on)
  3  the admin API cannot be reached, or its store cannot answer: worth a retry"""
REMOVE_OPTIONS = {"who": "WHO", "ban": "--ban", "ban_seconds": "--ban"}
# Those that remove, ban, lock or move: each asks first, unless --yes.
ASKING_ACTIONS = ("remove", "lockdown", "move")


def confirm(question: str, yes: bool) -> None:
    """Ask `question` with [y/N] on the terminal, unless `yes`. CliError if not confirmed, and
    at once, without asking, when stdin is no terminal: a script says --yes or is refused, it
    never hangs on a question nobody sees."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"{question} Not done: no terminal to ask on; pass --yes to do it",
            code="not_confirmed",
        )
    try:
        # On stderr: what --json prints on stdout stays the API's JSON alone.
        print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        # Ctrl-C at the question is a no, said as one (exit 2), not a traceback.
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        if not answer.endswith("\n"):
            print(file=sys.stderr)  # Ctrl-C or Ctrl-D left the cursor after the question
        raise CliError("not done: not confirmed", code="not_confirmed")


def refuse_unaskable(command: str, yes: bool) -> None:
    """For a command that will ask (`confirm`): refused at once, before anything is looked up,
    when there is no --yes and no terminal to ask on, since nobody could answer the question."""
    if not yes and not sys.stdin.isatty():
        raise CliError(
            f"`{command}` asks first, and there is no terminal to ask on: pass --yes to do it"
            " without asking",
            code="not_confirmed",
        )


def ban_seconds(text: str) -> int | None:
    """--ban: a duration (30m, 2h, 7d) or `forever` (None)."""
    if text.strip().lower() == "forever":
        return None
    seconds = parse_duration(text)
    if not 60 <= seconds <= 366 * 86400:
        raise CliError(f"--ban {text}: a ban lasts from 1m to 366d, or forever")
    return seconds


def the_one_named(client: AdminClient, room: str, who: str) -> dict[str, Any]:
    """The one participant of `room` that `who` names (an id, or a shown name): NothingMatched
    if nobody, CliError listing them if several."""
    found: list[dict[str, Any]] = client.call(
        "GET",
        _room_path(room, f"participants?who={quote(who, safe='')}"),
        options={"who": "WHO"},
    )
    if not found:
        raise NothingMatched(
            f"nobody in room {room} has this id or name; `meetgate room roster {room}` shows who"
            " is in, with their ids"
        )
    if len(found) > 1:
        listed = "\n".join(f"  {p['id']}  {p['role']:<8}  {p['name']}" for p in found)
        raise CliError(
            f"{who!r} names {len(found)} people in room {room}; give one of their ids:\n{listed}",
            code="several",
            candidates=found,
        )
    (one,) = found
    if one["role"] == "host" and who.strip() != one["name"] and who.strip().lower() != one["id"]:
        # A look-alike of a host's name must not remove the host.
        raise CliError(
            f"{who!r} is like the name of a host, {one['name']} ({one['id']}): to act on a host,"
            " give their id or their shown name exactly",
            code="host_needs_exact_name",
            candidates=[one],
        )
    return one


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell; the last column unpadded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def _room_path(room: str, *rest: str) -> str:
    return "/".join([f"/api/v1/rooms/{quote(room, safe='')}", *rest])


def room_emergency(args: argparse.Namespace) -> int:
    """roster, remove, unban, lockdown, unlock, move, audit: the host's dashboard actions."""
    if args.action in ASKING_ACTIONS:
        refuse_unaskable(f"meetgate room {args.action}", args.yes)
    seconds: int | None = None
    if args.action == "remove" and args.ban is not None:
        seconds = ban_seconds(args.ban)
    client = admin_client(args)
    result: Any
    if args.action == "roster":
        result = client.call("GET", _room_path(args.name, "participants"))
        if not args.json:
            rows = [[p["id"], p["role"], p["name"], p["via"], _when(p["since"])] for p in result]
            print_table(["ID", "ROLE", "NAME", "VIA", "SINCE"], rows)
    elif args.action == "remove":
        found = the_one_named(client, args.name, args.who)
        if args.ban is None:
            what = "remove"
        else:
            what = "remove and ban " + ("for good" if seconds is None else f"for {args.ban}")
        confirm(
            f"{what.capitalize()} {found['name']} ({found['role']}, {found['id']}) in room"
            f" {args.name}?",
            args.yes,
        )
        body: dict[str, Any] = {"who": found["id"], "ban": args.ban is not None}
        if seconds is not None:
            body["ban_seconds"] = seconds
        result = client.call(
            "POST", _room_path(args.name, "remove"), body, options=REMOVE_OPTIONS, matching=True
        )
        if not args.json:
            banned = ""
            if result["banned"]:
                until = result["banned_until"]
                banned = " and banned " + ("for good" if until is None else f"until {_when(until)}")
            print(f"removed {result['name']} ({result['id']}) from room {args.name}{banned}")
    elif args.action == "unban":
        result = client.call(
            "POST",
            _room_path(args.name, "unban"),
            {"who": args.who},
            options={"who": "WHO"},
            matching=True,
            next_steps={
                "not_found": "WHO must name a banned admission of the room (by its id or shown"
                " name) while its record lives; `meetgate room audit ROOM` shows the bans."
            },
        )
        if not args.json:
            print(f"lifted the ban on {result['name']} ({result['id']}) in room {args.name}")
    elif args.action == "lockdown":
        confirm(
            f"Lock down room {args.name}: lock it, remove every attendee at once, quiet mode on?",
            args.yes,
        )
        result = client.call("POST", _room_path(args.name, "lockdown"))
        if not args.json:
            print(
                f"room {args.name} is locked down: {result['removed']} attendee(s) removed,"
                " only hosts can chat; `meetgate room unlock` ends it"
            )
    elif args.action == "unlock":
        result = client.call("POST", _room_path(args.name, "unlock"))
        if not args.json:
            print(f"room {args.name} is open again")
            if result["quiet"]:
                # As on the dashboard: unlocking does not end quiet mode (a lockdown's too).
                print(
                    f"quiet mode is still on (only hosts can chat): `meetgate room quiet"
                    f" {args.name} off` ends it"
                )
    elif args.action == "move":
        confirm(
            f"Move the meeting in room {args.name} to the new room {args.new}? Everyone still"
            " admitted is carried over.",
            args.yes,
        )
        result = client.call(
            "POST", _room_path(args.name, "move"), {"to": args.new}, options={"to": "NEW"}
        )
        if not args.json:
            print(f"the meeting moved from room {args.name} to room {result['name']}")
    else:
        result = client.call("GET", _room_path(args.name, "audit"))
        if not args.json:
            rows = [
                [_when(e["at"]), e["actor_name"], e["action"], e["detail"], e["target"]]
                for e in result
            ]
            print_table(["AT", "BY", "ACTION", "DETAIL", "WHOM (PSEUDONYM)"], rows)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def add_registration_options(change: argparse.ArgumentParser) -> None:
    """`meetgate room set`'s registration options (docs/operations.md, "Registration")."""
    change.add_argument(
        "--registration",
        choices=["on", "off"],
        help="take registrations (/_meetgate/register/ROOM) for hosts to review; needs an SMTP"
        " server",
    )
    change.add_argument(
        "--auto-approve-domain",
        action="extend",
        nargs="+",
        metavar="DOMAIN",
        help="replaces the list: registrations confirmed from addresses at these domains are"
        " approved at once (several, or the option repeated)",
    )
    change.add_argument(
        "--auto-approve-email",
        action="extend",
        nargs="+",
        metavar="ADDRESS",
        help="replaces the list: registrations confirmed from these addresses are approved at"
        " once (several, or repeated)",
    )
    change.add_argument(
        "--no-auto-approve",
        action="store_true",
        help="empty both auto-approval lists: every registration waits for a host",
    )
    change.add_argument(
        "--series",
        metavar="NAME|none",
        help="rooms of one series (a-z, 0-9, '-', '_') share 'seen before' for registrations",
    )
    for option, which in (("--starts-at", "start"), ("--ends-at", "end")):
        change.add_argument(
            option,
            type=_moment,
            metavar="TIME|none",
            help=f"the meeting's {which}: ISO 8601 with an offset, e.g. 2026-12-20T14:00+08:00"
            " (Z for UTC), or seconds since the epoch; none clears it",
        )


def add_emergency_commands(room_sub: Any, client: list[argparse.ArgumentParser]) -> None:
    """`meetgate room roster|remove|unban|lockdown|unlock|move|audit`."""
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the admin API's JSON answer")
    asking = argparse.ArgumentParser(add_help=False)
    asking.add_argument(
        "--yes", action="store_true", help="do it without asking (needed without a terminal)"
    )
    parents = [*client, output]

    def emergency(name: str, summary: str, examples: list[str], *more: Any) -> Any:
        return command(
            room_sub,
            name,
            summary,
            examples,
            [*parents, *more],
            description=f"{summary[0].upper()}{summary[1:]}.\n\n{EXIT_CODES}",
        )

    roster = emergency(
        "roster",
        "who is in the meeting: id, role, name, how they came in, since when",
        ["meetgate room roster board", "meetgate room roster board --json"],
    )
    roster.add_argument("name", help="the room")
    remove = emergency(
        "remove",
        "remove someone from the meeting at once, and ban them with --ban (asks first)",
        [
            "meetgate room remove board 'Ada Lovelace (2)'",
            "meetgate room remove board 3f9c…e1 --ban 2h   # the id from `meetgate room roster`",
            "meetgate room remove board Troll --ban forever --yes",
        ],
        asking,
    )
    remove.add_argument("name", help="the room")
    remove.add_argument(
        "who",
        metavar="WHO",
        help="an admission id, or a shown name (look-alikes and ' (2)' match too; a name that"
        " names several is refused with their ids)",
    )
    remove.add_argument(
        "--ban",
        metavar="DURATION|forever",
        help="also bar them from the meeting, even if it moves: e.g. 30m, 2h, 7d, or forever",
    )
    unban = emergency(
        "unban",
        "lift a ban: the person may come back with a new invite or sign-in",
        ["meetgate room unban board 'Ada Lovelace'", "meetgate room unban board 3f9c…e1"],
    )
    unban.add_argument("name", help="the room they were banned from")
    unban.add_argument(
        "who",
        metavar="WHO",
        help="the banned admission's id or shown name, while its record lives (until it would"
        " have expired, [admission] ttl_seconds)",
    )
    lockdown = emergency(
        "lockdown",
        "lock the room, remove every attendee at once, quiet mode on; hosts stay (asks first)",
        ["meetgate room lockdown board", "meetgate room lockdown board --yes --json"],
        asking,
    )
    lockdown.add_argument("name", help="the room")
    unlock = emergency(
        "unlock",
        "let people join again; this also ends a lockdown (quiet mode stays on: `room quiet`)",
        ["meetgate room unlock board"],
    )
    unlock.add_argument("name", help="the room")
    move = emergency(
        "move",
        "move the meeting to a new room: everyone still admitted comes along (asks first)",
        ["meetgate room move board board-2b7f9c"],
        asking,
    )
    move.add_argument("name", help="the room the meeting is in")
    move.add_argument("new", metavar="NEW", help="the new room's name: a-z, 0-9, '-', '_'")
    audit = emergency(
        "audit",
        "the room's log of host actions (the admin's too), newest first",
        ["meetgate room audit board", "meetgate room audit board --json"],
    )
    audit.add_argument("name", help="the room")


def command_invite(args: argparse.Namespace) -> int:
    client = admin_client(args)
    if args.action == "import":
        return invite_import(client, args)
    if args.action == "progress":
        return invite_progress(client, args)
    if args.action == "create":
        body = {
            "name": args.name,
            "role": "host" if args.host else "attendee",
            "max_uses": args.uses,
            "expires_in_seconds": parse_duration(args.expires),
        }
        invite = client.call(
            "POST",
            f"/api/v1/rooms/{args.room}/invites",
            body,
            options={
                "name": "--name",
                "role": "--host",
                "max_uses": "--uses",
                "expires_in_seconds": "--expires (in seconds)",
            },
        )
        role = "host" if invite["role"] == "host" else "attendee"
        print(
            f"invite {invite['id']} for {invite['name']} ({role}) in {invite['room']},"
            f" {invite['max_uses']} use(s), expires {_when(invite['expires_at'])}"
        )
        print(invite["link"])
    elif args.action == "list":
        invites = client.call("GET", f"/api/v1/rooms/{args.room}/invites")
        if not invites:
            print("no invites")
        for invite in invites:
            state = "revoked" if invite["revoked"] else f"{invite['uses']}/{invite['max_uses']}"
            print(
                f"{invite['id']}  {invite['role']:<8} {state:<9} "
                f"expires {_when(invite['expires_at'])}"
            )
    elif args.action == "revoke":
        if (args.id is None) == (args.name is None) or (args.name is not None) != (
            args.room is not None
        ):
            raise CliError("give the invite's id, or --room and --name (not both)")
        if args.id is not None:
            client.call(
                "DELETE",
                f"/api/v1/invites/{quote(args.id, safe='')}",
                matching=True,
                next_steps={"not_found": "`meetgate invite list --room ROOM` shows the ids."},
            )
            print(f"revoked invite {args.id}")
        else:
            refuse_unaskable("meetgate invite revoke --name", args.yes)
            # Looked up first (as the admin API's invites/revoke would find it), so that the
            # question says whose invite it is; then revoked by its id.
            found: list[dict[str, Any]] = client.call(
                "GET",
                _room_path(args.room, f"invites?name={quote(args.name, safe='')}"),
                options={"name": "--name"},
            )
            if not found:
                raise NothingMatched(
                    f"no invite of room {args.room} that still works is made for this name;"
                    f" `meetgate invite list --room {args.room}` shows the ids"
                )
            if len(found) > 1:
                listed = "\n".join(f"  {i['id']}  {i['role']}" for i in found)
                raise CliError(
                    f"{args.name!r} names {len(found)} invites of room {args.room} that still"
                    f" work; give one of their ids:\n{listed}",
                    code="several",
                    candidates=[{"id": i["id"], "role": i["role"]} for i in found],
                )
            (invite,) = found
            confirm(
                f"Revoke the invite of {invite['name']} ({invite['role']}, {invite['id']}) to"
                f" room {args.room}?",
                args.yes,
            )
            client.call(
                "DELETE",
                f"/api/v1/invites/{quote(invite['id'], safe='')}",
                matching=True,
                next_steps={"not_found": "It was revoked meanwhile, or its room deleted."},
            )
            done = {"id": invite["id"], "name": invite["name"]}
            if args.json:
                print(json.dumps(done, ensure_ascii=False, indent=2))
            else:
                print(f"revoked invite {done['id']} (made for {done['name']})")
    return 0


# ---------------------------------------------------------------- invite import

# `meetgate invite import` (docs/operations.md, "Importing a list of invitees") and
# `meetgate invite progress`.
IMPORT_EXIT_CODES = """\
exit codes:
  0  every row made an invite (and, followed to its end, every e-mail was sent)
  1  some rows were refused (each printed with its line and reason), or, followed to
     its end, some e-mails could not be sent; the others were made
  2  nothing was made: every row refused, an empty file, a file over a limit, bad
     usage, or refused by the admin API (no such room, a meeting that moved on, --send
     without an SMTP server)
  3  the admin API cannot be reached, or its store cannot answer: worth a retry"""
IMPORT_OPTIONS = {
    "csv": "FILE",
    "base64": "FILE",
    "delimiter": "--delimiter",
    "language": "--language",
    "uses": "--uses",
    "expires": "--expires (in seconds)",
}
# How often a followed batch is read again: on a terminal, to move the bar; in a log, a line
# is printed only when the counts change.
FOLLOW_SECONDS = 1.0
BAR_CELLS = 30
MIN_BAR_CELLS = 5


def read_list_file(name: str) -> bytes:
    """The file's bytes (`-`: standard input), refused here if over the admin API's limit."""
    from gateway.admission.invite_import import MAX_FILE_BYTES

    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(name, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}", code="unreadable") from exc
    if len(data) > MAX_FILE_BYTES:
        raise CliError(
            f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: nothing was made;"
            " split it into several files",
            code="invite_list_refused",
        )
    return data


def progress_counts(progress: dict[str, Any], now: float) -> str:
    """A batch's counts in words: `312/500 sent, 2 failed, 186 waiting (…)`."""
    text = (
        f"{progress['sent']}/{progress['total']} sent, {progress['failed']} failed,"
        f" {progress['waiting']} waiting"
    )
    retry_at = progress.get("retry_at")
    if retry_at is not None and progress["waiting"]:
        seconds = max(0, round(retry_at - now))
        text += f" (mail server failing: next try in {seconds} s)"
    return text


def progress_bar(progress: dict[str, Any], now: float, width: int) -> str:
    """One line for a terminal `width` columns wide: a bar of sent (#) and failed (!) as wide as
    the counts leave room for (none on a narrow one), then the counts."""
    text = progress_counts(progress, now)
    cells = min(BAR_CELLS, width - len(text) - 4)
    if cells < MIN_BAR_CELLS:
        return text[: max(10, width - 1)]
    total = max(1, progress["total"])
    sent = progress["sent"] * cells // total
    failed = min(cells - sent, progress["failed"] * cells // total)
    return f"[{'#' * sent}{'!' * failed}{'.' * (cells - sent - failed)}] {text}"


def follow_batch(client: AdminClient, batch: str, *, show: bool) -> dict[str, Any]:
    """Read the batch's progress until it is done, shown as a bar redrawn on a terminal or as
    a line each time the counts change (`show`: else silently). Ctrl-C stops following only:
    KeyboardInterrupt is raised with the last progress read in `last` (see follow's caller)."""
    terminal = sys.stdout.isatty()
    printed = ""
    progress: dict[str, Any] = client.call("GET", f"/api/v1/outbox/{quote(batch, safe='')}")
    try:
        while True:
            now = time.time()
            if show and terminal:
                width = shutil.get_terminal_size().columns
                print(f"\r{progress_bar(progress, now, width)}\x1b[K", end="", flush=True)
            elif show:
                line = progress_counts({**progress, "retry_at": None}, now)
                if line != printed:
                    print(line, flush=True)
                    printed = line
            if progress["done"]:
                break
            time.sleep(FOLLOW_SECONDS)
            progress = client.call("GET", f"/api/v1/outbox/{quote(batch, safe='')}")
    except KeyboardInterrupt as exc:
        raise StoppedFollowing(progress) from exc
    finally:
        if show and terminal:
            print(flush=True)
    return progress


class StoppedFollowing(Exception):
    """Ctrl-C while a batch was followed: the server goes on sending."""

    def __init__(self, last: dict[str, Any]) -> None:
        super().__init__("stopped following")
        self.last = last


def invite_import(client: AdminClient, args: argparse.Namespace) -> int:
    data = read_list_file(args.file)
    body: dict[str, Any] = {
        # Sent as bytes, in base64: a line that is not UTF-8 is then reported on its own.
        "csv": base64.b64encode(data).decode("ascii"),
        "base64": True,
        "send": args.send,
        "uses": args.uses,
        "expires": parse_duration(args.expires),
    }
    if args.delimiter is not None:
        body["delimiter"] = args.delimiter
    if args.language is not None:
        body["language"] = args.language
    try:
        answer: dict[str, Any] = client.call(
            "POST",
            _room_path(args.room, "invites", "import"),
            body,
            options=IMPORT_OPTIONS,
            next_steps={
                "mail_not_configured": "Import without --send to get the links, or set [smtp]"
                " in the config and restart the gate.",
                "import_interrupted": "Import the same file again once the store answers.",
            },
        )
    except CliError as exc:
        if exc.code == "import_interrupted":
            # The store failed on the way (what was made is revoked): worth a retry.
            raise AdminUnreachable(str(exc), code=exc.code) from exc
        raise
    problems = answer["problems"]
    for problem in problems:
        print(f"line {problem['line']}: {problem['reason']}", file=sys.stderr)
    refused = f"; {len(problems)} row(s) refused (above)" if problems else ""
    progress: dict[str, Any] | None = None
    stopped = False
    if not args.send:
        if not args.json and answer["links"]:
            rows = [[str(x["line"]), x["role"], x["link"], x["name"]] for x in answer["links"]]
            print_table(["LINE", "ROLE", "LINK", "NAME"], rows)
        print(
            f"made {answer['created']} invite(s) in room {args.room}{refused}. Each link lets"
            " its holder in under the name beside it: give each only to its person.",
            file=sys.stderr,
        )
    else:
        print(
            f"queued {answer['created']} invitation(s) to room {args.room} (batch"
            f" {answer['batch']}){refused}",
            file=sys.stderr,
        )
        if answer["batch"] is not None and not args.no_wait:
            try:
                progress = follow_batch(client, answer["batch"], show=not args.json)
            except StoppedFollowing as stop:
                progress, stopped = stop.last, True
                print(
                    "stopped following: the gate goes on sending; `meetgate invite progress"
                    f" {answer['batch']}` shows how far it got",
                    file=sys.stderr,
                )
    if args.json:
        print(json.dumps({**answer, "progress": progress}, ensure_ascii=False, indent=2))
    if answer["created"] == 0:
        if not problems:
            print("the file lists nobody: nothing was made", file=sys.stderr)
        return 2
    undelivered = progress is not None and not stopped and progress["failed"] > 0
    if undelivered and progress is not None:
        print(
            f"{progress['failed']} e-mail(s) could not be sent (the mail server refused them"
            " or kept failing); the gate's log says why, by batch",
            file=sys.stderr,
        )
    return 1 if problems or undelivered else 0


def invite_progress(client: AdminClient, args: argparse.Namespace) -> int:
    path = f"/api/v1/outbox/{quote(args.batch, safe='')}"
    if not args.follow:
        progress: dict[str, Any] = client.call(
            "GET",
            path,
            matching=True,
            next_steps={"not_found": "A batch is known for [outbox] batch_kept_seconds."},
        )
    else:
        try:
            progress = follow_batch(client, args.batch, show=not args.json)
        except StoppedFollowing as stop:
            progress = stop.last
            print("stopped following: the gate goes on sending", file=sys.stderr)
    if args.json:
        print(json.dumps(progress, ensure_ascii=False, indent=2))
    elif not args.follow:
        print(progress_counts(progress, time.time()))
    return 1 if progress["done"] and progress["failed"] else 0


def add_import_commands(invite_sub: Any, client: list[argparse.ArgumentParser]) -> None:
    """`meetgate invite import` and `meetgate invite progress`."""
    importing = command(
        invite_sub,
        "import",
        "make invites for a list (CSV: name, e-mail, optional role): links printed, or sent",
        [
            "meetgate invite import --room board invitees.csv   # prints a link per row",
            "meetgate invite import --room board invitees.csv --send --language zh-Hant",
            "meetgate invite import --room board - --send --no-wait < invitees.csv",
        ],
        client,
        description="Make a personal invite for each row of a CSV file: name, e-mail address,"
        " optional role\n(attendee or host); a header row (name, e-mail, role, in any order)"
        " optional; comma\nor semicolon separated; UTF-8. Each row is checked first; a refused"
        " row is printed\nwith its line number and reason, and a file over 2 MiB or 5,000 rows"
        " is refused whole.\n\nWithout --send, a table of LINE, ROLE, LINK, NAME is printed:"
        " the links are secrets,\neach lets its holder in under that name; deliver each only"
        " to its person. With\n--send, each link goes by e-mail (the gate needs [smtp]) and"
        " the sending is followed\n(a bar on a terminal, a line per change otherwise) until"
        " done; Ctrl-C stops following,\nnot sending.\n\n" + IMPORT_EXIT_CODES,
    )
    importing.add_argument("file", metavar="FILE", help="the CSV file; - for standard input")
    importing.add_argument("--room", required=True, help="the room the links open")
    importing.add_argument(
        "--send", action="store_true", help="e-mail each invitee their link (needs [smtp])"
    )
    importing.add_argument(
        "--language",
        choices=LANGUAGE_TAGS,
        help="with --send: the e-mails' language (default: the room's, else English)",
    )
    importing.add_argument("--uses", type=int, default=1, help="how often each link works (1)")
    importing.add_argument(
        "--expires",
        default="7d",
        help="printed links: lifetime, e.g. 2h, 7d (7d); sent ones last until the meeting ends",
    )
    importing.add_argument(
        "--delimiter",
        choices=[",", ";"],
        metavar="',' or ';'",
        help="the separator (default: found from the first rows)",
    )
    importing.add_argument(
        "--no-wait", action="store_true", help="with --send: do not follow the sending"
    )
    importing.add_argument(
        "--json",
        action="store_true",
        help="print the admin API's answer (with the links, and the last progress) as JSON",
    )
    progress = command(
        invite_sub,
        "progress",
        "how far a batch of e-mailed invitations got (counts only)",
        ["meetgate invite progress 3f9c2a1b7d4e5f60", "meetgate invite progress 3f9c… --follow"],
        client,
        description="How far a batch of e-mailed invitations got: sent, failed, waiting.\n\n"
        "exit codes: 0 read (or followed); 1 no such batch, or done with some e-mails not\n"
        "sent; 2 bad usage or refused; 3 the admin API or its store cannot answer",
    )
    progress.add_argument("batch", metavar="BATCH", help="the batch `invite import` printed")
    progress.add_argument(
        "--follow", action="store_true", help="follow it until done (Ctrl-C stops following)"
    )
    progress.add_argument("--json", action="store_true", help="print the admin API's answer")


def command_store(args: argparse.Namespace) -> int:
    client = admin_client(args)
    memory = client.call("GET", "/api/v1/store/memory")
    if not memory["lost"]:
        print("the store's memory is intact: nothing to acknowledge")
        return 0
    print(
        f"The store lost its memory ({memory['reason']}).\n"
        "Bans, revocations and locks made before the loss may be forgotten; joins and ticket"
        " refreshes are refused until you acknowledge it. Check the rooms, their locks and the"
        " bans you know of (docs/operations.md) first. Once acknowledged, connections whose"
        " admission the store no longer holds are cut."
    )
    if not args.yes:
        try:
            answer = input("Acknowledge the loss and admit people again? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("not acknowledged (pass --yes to acknowledge without asking)")
    done = client.call("POST", "/api/v1/store/memory/acknowledge-loss")
    if done["acknowledged"]:
        print("acknowledged: every replica admits people again within a few seconds")
    elif done["lost"]:
        raise CliError(f"still lost ({done['reason']}): run `meetgate doctor`")
    else:
        print("the store's memory is intact: nothing to acknowledge")
    return 0


# ---------------------------------------------------------------- doctor


def command_doctor(args: argparse.Namespace) -> int:
    from gateway import doctor
    from gateway.doctor_options import options_from

    findings = doctor.run(Path(args.config) if args.config else None, options_from(args))
    print(doctor.render(findings))
    return doctor.exit_status(findings)


# ---------------------------------------------------------------- argument parsing


class Parser(argparse.ArgumentParser):
    """argparse, with a pointer to the command's help (and its examples) after a usage error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help` for examples)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="meetgate",
        description=__doc__,
        epilog="Example:\n  meetgate init --public-url https://meet.example.org\n"
        "  meetgate serve --config meetgate.toml\n"
        "  meetgate room create board --title 'Board meeting'\n"
        "  meetgate invite create --room board --name 'Grace Hopper' --host\n"
        "Each command's --help shows its options and examples.\n\n"
        "Exit codes of the commands that call the admin API: 0 done; 1 nothing matched (nobody\n"
        "in the room is WHO, no such invite; a registration ID that names none, several or one\n"
        "answered already, no such page); 2 bad usage, not confirmed (a question answered\n"
        "no, Ctrl-C or Ctrl-D at it, or no terminal and no --yes) or refused by the admin API;\n"
        "3 the admin API cannot be reached or its store cannot answer: worth a retry.\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    serve = command(
        sub,
        "serve",
        "run the gateway and its admin API",
        [
            "meetgate serve --config /etc/meetgate/meetgate.toml",
            "meetgate serve    # no config file: a trial run with secrets that die with it",
        ],
    )
    serve.add_argument("--config", help="TOML config file (default: ./meetgate.toml if present)")
    serve.add_argument(
        "--workers",
        type=int,
        help="serving processes ([listen] workers; more than one needs the Redis store)",
    )
    serve.set_defaults(func=command_serve)

    init = command(
        sub,
        "init",
        "write a config file with fresh secrets (mode 0600)",
        [
            "meetgate init --path secrets/meetgate.toml --public-url https://meet.example.org \\",
            "    --upstream http://jitsi-web:80 --store redis://redis:6379/0",
        ],
    )
    init.add_argument(
        "--path",
        default="meetgate.toml",
        help="where to write it (meetgate.toml); a new folder for it is git-ignored",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument(
        "--public-url",
        default="http://127.0.0.1:8000",
        help="the address attendees use, e.g. https://meet.example.org",
    )
    init.add_argument(
        "--upstream",
        default="http://127.0.0.1:8080",
        help="Jitsi's web server, as Meetgate reaches it",
    )
    init.add_argument("--store", default="memory://", help="memory:// or redis://host:6379/0")
    init.add_argument(
        "--algorithm",
        choices=["RS256", "HS256"],
        default="RS256",
        help="RS256 (default): a key pair, prosody fetches the public key from Meetgate;"
        " HS256: a secret prosody must hold too",
    )
    init.set_defaults(func=command_init)

    from gateway.doctor_options import add_arguments as add_doctor_arguments

    doctor = command(
        sub,
        "doctor",
        "check a live deployment; exit 1 if anything FAILs",
        [
            "meetgate doctor --config /etc/meetgate/meetgate.toml --url https://meet.example.org",
            "meetgate doctor --url https://meet.example.org    # no config: from outside only",
        ],
    )
    add_doctor_arguments(doctor)
    doctor.set_defaults(func=command_doctor)

    client_options = argparse.ArgumentParser(add_help=False)
    client_options.add_argument("--config", help="config file to read the admin API address from")
    client_options.add_argument(
        "--admin-url", help="the admin API, e.g. http://127.0.0.1:8001 (default: from the config)"
    )
    client_options.add_argument(
        "--admin-token",
        help="the admin token (default: MEETGATE_ADMIN__TOKEN, else the config file's)",
    )
    client = [client_options]

    room = command(
        sub,
        "room",
        "create, list, change and delete rooms",
        ["meetgate room create board --title 'Board meeting'", "meetgate room list"],
    )
    room_sub = room.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    create = command(
        room_sub,
        "create",
        "create a room",
        [
            "meetgate room create board --title 'Board meeting'",
            "meetgate room create taipei --title '台北例會' --language zh-Hant",
        ],
        client,
    )
    create.add_argument("name", help="room name: a-z, 0-9, '-', '_'")
    create.add_argument("--title", help="shown on the join page")
    create.add_argument(
        "--language",
        choices=LANGUAGE_TAGS,
        help="the language of the room's pages for visitors whose browser asks for none of"
        " these (their own choice still wins; default: English)",
    )
    command(
        room_sub, "list", "list the rooms", ["meetgate room list --config meetgate.toml"], client
    )
    change = command(
        room_sub,
        "set",
        "lock or unlock a room, demand proof-of-work, set its default language, its chat limits"
        " or its registration",
        [
            "meetgate room set board --lock",
            "meetgate room set board --chat-per-10s 3 --chat-burst 5 --strikes never",
            "meetgate room set board --unlock --challenge off",
            "meetgate room set board --language zh-Hans",
            "meetgate room set board --language none   # back to the visitor's browser, or English",
            "meetgate room set conf --registration on --auto-approve-domain uni.example \\",
            "    --series conf-2026 --starts-at 2026-12-20T14:00+08:00 \\",
            "    --ends-at 2026-12-20T18:00+08:00",
            "meetgate room set conf --no-auto-approve --starts-at none --ends-at none",
        ],
        client,
    )
    change.add_argument("name", help="the room")
    change.add_argument(
        "--yes", action="store_true", help="--lock without asking (needed without a terminal)"
    )
    locking = change.add_mutually_exclusive_group()
    locking.add_argument(
        "--lock",
        dest="lock",
        action="store_const",
        const=True,
        help="no new joins (hosts excepted)",
    )
    locking.add_argument(
        "--unlock", dest="lock", action="store_const", const=False, help="let people join again"
    )
    change.add_argument(
        "--challenge", choices=["on", "off"], help="demand proof-of-work for every join attempt"
    )
    change.add_argument(
        "--language",
        choices=[*LANGUAGE_TAGS, NO_LANGUAGE],
        help="the language of the room's pages for visitors whose browser asks for none of"
        " these (their own choice still wins); none: no default",
    )
    change.add_argument(
        "--chat-per-10s",
        type=_count,
        metavar="N",
        help="chat messages each participant may send per 10 seconds (0: the gate's default)",
    )
    change.add_argument(
        "--chat-burst", type=_count, metavar="N", help="chat messages at once (0: default)"
    )
    change.add_argument(
        "--chat-max-bytes",
        type=_count,
        metavar="N",
        help="the longest chat message, in bytes (0: default; else 64 or more)",
    )
    change.add_argument(
        "--strikes",
        type=_strikes,
        metavar="N|never|default",
        help="refused messages before the sender is removed",
    )
    change.add_argument(
        "--private-to-hosts",
        choices=["on", "off"],
        help="in quiet mode, attendees may still write privately to a host",
    )
    add_registration_options(change)
    show = command(
        room_sub,
        "show",
        "a room's settings: state, ways in, language, chat rules, registration, meeting time",
        ["meetgate room show board", "meetgate room show board --json"],
        client,
    )
    show.add_argument("name", help="the room")
    show.add_argument("--json", action="store_true", help="print the admin API's JSON answer")
    quiet = command(
        room_sub,
        "quiet",
        "quiet mode: only hosts can chat (a lockdown switches it on too)",
        ["meetgate room quiet board on", "meetgate room quiet board off"],
        client,
    )
    quiet.add_argument("name", help="the room")
    quiet.add_argument("state", choices=["on", "off"], help="on: only hosts can chat")
    policy = command(
        room_sub,
        "policy",
        "who may enter, and how (replaces the policy)",
        [
            "meetgate room policy board --oidc uni --allow-domain uni.example lab.example",
            "meetgate room policy board --no-invite --lobby",
            "meetgate room policy board --email-code --allow-domain uni.example \\",
            "    --host-email chair@uni.example",
        ],
        client,
    )
    policy.add_argument("name", help="the room")
    policy.add_argument("--no-invite", action="store_true", help="personal invites do not work")
    policy.add_argument(
        "--oidc",
        action="extend",
        nargs="+",
        metavar="PROVIDER",
        help="sign-in with these providers ('any': every one configured)",
    )
    policy.add_argument("--email-code", action="store_true", help="one-time codes by e-mail")
    policy.add_argument(
        "--allow-email",
        action="extend",
        nargs="+",
        default=[],
        metavar="ADDRESS",
        help="only these addresses get in by sign-in or code (several, or the option repeated)",
    )
    policy.add_argument(
        "--allow-domain",
        action="extend",
        nargs="+",
        default=[],
        metavar="DOMAIN",
        help="only addresses at these domains get in by sign-in or code (several, or repeated)",
    )
    policy.add_argument(
        "--allow-group",
        action="extend",
        nargs="+",
        default=[],
        metavar="GROUP",
        help="sign-in only: members of these groups get in (several, or repeated)",
    )
    policy.add_argument("--lobby", action="store_true", help="a host approves who comes in")
    policy.add_argument(
        "--host-email",
        action="extend",
        nargs="+",
        default=[],
        metavar="ADDRESS",
        help="these addresses, once proven, enter as hosts (several, or repeated)",
    )
    check = command(
        room_sub,
        "check-email",
        "whether the room's policy lists an address, as allowed or host (it shows no list)",
        ["meetgate room check-email board chair@uni.example"],
        client,
    )
    check.add_argument("name", help="the room")
    check.add_argument("address", help="the e-mail address")
    delete = command(
        room_sub,
        "delete",
        "delete a room with its invites and admissions",
        ["meetgate room delete board", "meetgate room delete board --yes   # in a script"],
        client,
    )
    delete.add_argument("name", help="the room")
    delete.add_argument(
        "--yes", action="store_true", help="do it without asking (needed without a terminal)"
    )
    add_emergency_commands(room_sub, client)
    room.set_defaults(func=command_room)
    add_registration_commands(sub, client)

    invite = command(
        sub,
        "invite",
        "create, import, list and revoke personal join links",
        [
            "meetgate invite create --room board --name 'Grace Hopper' --host",
            "meetgate invite import --room board invitees.csv --send",
            "meetgate invite list --room board",
        ],
    )
    invite_sub = invite.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    create = command(
        invite_sub,
        "create",
        "make a personal join link and print it (it is shown only this once)",
        [
            "meetgate invite create --room board --name 'Grace Hopper' --host   # a host link",
            "meetgate invite create --room board --name 'Ada Lovelace' --uses 3 --expires 2h",
        ],
        client,
    )
    create.add_argument("--room", required=True, help="the room the link opens")
    create.add_argument("--name", required=True, help="the name everyone will see")
    create.add_argument("--host", action="store_true", help="make the invitee a host")
    create.add_argument("--uses", type=int, default=1, help="how often the link works (1)")
    create.add_argument("--expires", default="7d", help="lifetime, e.g. 2h, 7d (7d)")
    listing = command(
        invite_sub,
        "list",
        "list a room's invites: id, role, uses, expiry (never the names: docs/privacy.md)",
        ["meetgate invite list --room board"],
        client,
    )
    listing.add_argument("--room", required=True, help="the room")
    revoke = command(
        invite_sub,
        "revoke",
        "make a join link stop working, by its id or by the invitee's name",
        [
            "meetgate invite revoke 3f9c2a1b7d4e5f60   # the id from `meetgate invite list`",
            "meetgate invite revoke --room board --name 'Ada Lovelace'",
        ],
        client,
        description="Make a join link stop working, by its id or by the invitee's name (several\n"
        "unrevoked invites for the name are refused, with their ids).\n\n"
        "exit codes: 0 done; 1 no invite has the id, or none that still works is for --name;\n"
        "2 bad usage, not confirmed or refused; 3 the admin API or its store cannot answer",
    )
    revoke.add_argument("id", nargs="?", help="the invite's id, as `meetgate invite list` shows it")
    revoke.add_argument("--room", help="with --name: the room the invite is for")
    revoke.add_argument(
        "--name", help="with --room: the name the invite was made for (look-alikes match too)"
    )
    revoke.add_argument(
        "--yes",
        action="store_true",
        help="with --name: revoke without asking (needed without a terminal)",
    )
    revoke.add_argument("--json", action="store_true", help="with --name: print the API's answer")
    add_import_commands(invite_sub, client)
    invite.set_defaults(func=command_invite)

    store = command(
        sub,
        "store",
        "the store's memory: acknowledge a loss",
        ["meetgate store acknowledge-loss"],
    )
    store_sub = store.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    acknowledge = command(
        store_sub,
        "acknowledge-loss",
        "admit people again after the store lost its memory (docs/operations.md)",
        ["meetgate store acknowledge-loss --config /etc/meetgate/meetgate.toml --yes"],
        client,
    )
    acknowledge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    store.set_defaults(func=command_store)
    add_evidence_commands(sub)
    add_audit_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        # `meetgate invite list | head` should end quietly; a server must never die of a
        # client hanging up, so it keeps Python's default (SIGPIPE ignored).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"meetgate: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            # A script reading stdout gets JSON whatever happened; the exit code says the same.
            failed = {"error": exc.code, "message": str(exc), "candidates": exc.candidates}
            print(json.dumps(failed, ensure_ascii=False, indent=2))
        return exc.exit_code
    except ConfigError as exc:
        print(f"meetgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
