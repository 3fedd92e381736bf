"""`meetgate doctor`'s options: what the command line sets, kept apart from the checks so that
building `meetgate`'s parser (every command does) does not import them (gateway/doctor.py and
its network clients)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

# Longer than any network operation should take; a larger --timeout is a typo.
MAX_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """`public_url`: where to test TLS and headers from outside (default: the configured one).
    `jitsi_config_url`: where to fetch Jitsi's config.js (default: `<upstream>/config.js`).
    `cafile`: extra CA certificates to trust for the public URL (a private CA).
    `key_server`: RS256: where prosody fetches the public keys (its `asap_key_server`; default:
    `/_meetgate/keys` on the listen address).
    `timeout`: seconds for each network operation."""

    public_url: str | None = None
    jitsi_config_url: str | None = None
    cafile: str | None = None
    key_server: str | None = None
    timeout: float = 5.0


def timeout_seconds(text: str) -> float:
    """--timeout: a finite number of seconds above 0 (0, a negative number or nan makes every
    network check fail at once, or never end)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give seconds above 0, at most {MAX_TIMEOUT_SECONDS:g}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`meetgate doctor`'s options (gateway/cli.py builds the command around them)."""
    parser.add_argument(
        "--config",
        help="TOML config file (found as `serve` finds it); without one, --url checks only"
        " what can be seen from outside",
    )
    parser.add_argument(
        "--url",
        "--public-url",
        dest="public_url",
        metavar="URL",
        help="the gate's public address: TLS, headers and bypass probes are checked there"
        " (default: the config's public_url)",
    )
    parser.add_argument("--jitsi-config-url", help="default: <jitsi upstream>/config.js")
    parser.add_argument(
        "--cafile", help="CA certificates to trust for the public URL (a private CA)"
    )
    parser.add_argument(
        "--key-server",
        help="RS256: prosody's asap_key_server (default: /_meetgate/keys on the listen address)",
    )
    parser.add_argument(
        "--timeout",
        type=timeout_seconds,
        default=5.0,
        help="seconds per network operation (5)",
    )


def options_from(args: argparse.Namespace) -> DoctorOptions:
    """DoctorOptions from the options `add_arguments` defined."""
    return DoctorOptions(
        public_url=args.public_url,
        jitsi_config_url=args.jitsi_config_url,
        cafile=args.cafile,
        key_server=args.key_server,
        timeout=args.timeout,
    )
