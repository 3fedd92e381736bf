"""Per-room policy: building a valid one from what an admin or a host asked for, which paths a
room offers, and whether a verified identity may enter, as whom, and whether a host must approve
first. Pure: values in, a policy or a decision out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import Enum

from gateway.admission.identity import Path, VerifiedIdentity
from gateway.errors import InvalidInput
from gateway.store.records import Role, RoomPolicy

# How long a policy's lists may be, and each entry in them (the admin API, the CLI and the host
# dashboard share these).
MAX_PROVIDERS = 20
MAX_EMAILS = 10_000
MAX_DOMAINS = 1000
MAX_GROUPS = 1000
MAX_HOST_EMAILS = 1000
MAX_ADDRESS_CHARS = 254
MAX_DOMAIN_CHARS = 253
MAX_GROUP_CHARS = 256


def make_policy(
    *,
    invite: bool,
    oidc: bool,
    oidc_providers: Iterable[str],
    email_code: bool,
    allowed_emails: Iterable[str],
    allowed_domains: Iterable[str],
    allowed_groups: Iterable[str],
    lobby: bool,
    host_emails: Iterable[str],
    known_providers: Collection[str],
) -> RoomPolicy:
    """A room policy from what was asked for; InvalidInput naming every problem at once.

    Addresses and domains are trimmed and lower-cased ("@" before a domain dropped), groups only
    trimmed (group claims are compared as they are); blank entries are dropped and repeats kept
    once. `known_providers`: the configured OpenID Connect providers' names.
    """
    problems: list[str] = []
    providers = _entries(oidc_providers, lower=False)
    unknown = [name for name in providers if name not in known_providers]
    if unknown:
        problems.append(
            "No OpenID Connect provider is configured as "
            f"{', '.join(name[:40] for name in sorted(unknown)[:5])}."
        )
    if not (invite or oidc or email_code or lobby):
        problems.append("A room needs at least one way in.")
    if oidc and not known_providers:
        problems.append("Sign-in needs an OpenID Connect provider in the configuration.")
    emails = _entries(allowed_emails, lower=True)
    domains = _entries((d.strip().lstrip("@") for d in allowed_domains), lower=True)
    groups = _entries(allowed_groups, lower=False)
    hosts = _entries(host_emails, lower=True)
    for label, values, most in (
        ("providers", providers, MAX_PROVIDERS),
        ("allowed addresses", emails, MAX_EMAILS),
        ("allowed domains", domains, MAX_DOMAINS),
        ("allowed groups", groups, MAX_GROUPS),
        ("host addresses", hosts, MAX_HOST_EMAILS),
    ):
        if len(values) > most:
            problems.append(f"At most {most} {label} can be listed.")
    problems += _bad_entries("address", emails, MAX_ADDRESS_CHARS, _is_address)
    problems += _bad_entries("host address", hosts, MAX_ADDRESS_CHARS, _is_address)
    problems += _bad_entries("domain", domains, MAX_DOMAIN_CHARS, _is_domain)
    problems += _bad_entries("group", groups, MAX_GROUP_CHARS, lambda _: True)
    if problems:
        raise InvalidInput(" ".join(problems))
    return RoomPolicy(
        invite=invite,
        oidc=oidc,
        oidc_providers=providers,
        email_code=email_code,
        allowed_emails=emails,
        allowed_domains=domains,
        allowed_groups=groups,
        lobby=lobby,
        host_emails=hosts,
    )


def _entries(values: Iterable[str], *, lower: bool) -> tuple[str, ...]:
    """Trimmed (and lower-cased) entries, blanks dropped, each kept once in its first place."""
    kept: dict[str, None] = {}
    for value in values:
        entry = value.strip()
        if entry:
            kept[entry.lower() if lower else entry] = None
    return tuple(kept)


def _bad_entries(
    label: str, values: tuple[str, ...], max_chars: int, shaped: Callable[[str], bool]
) -> list[str]:
    """One problem for the first entry of a kind that cannot be right (not every one of 10 000)."""
    for value in values:
        if len(value) > max_chars:
            return [f"A {label} can be at most {max_chars} characters long."]
        if any(unicodedata.category(char)[0] in "CZ" for char in value if char != " "):
            return [f"A {label} contains a control, invisible or line-break character."]
        if not shaped(value):
            return [f"This is not a valid {label}: {value[:60]}"]
    return []


def _is_address(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local) and not any(char.isspace() for char in local) and _is_domain(domain)


def _is_domain(value: str) -> bool:
    return bool(value) and not any(char.isspace() or char in "@/\\" for char in value)


def policy_version(policy: RoomPolicy) -> str:
    """A short fingerprint of a policy: a form carries the one it showed, so that saving it cannot
    silently undo a change someone else made meanwhile."""
    text = json.dumps(dataclasses.asdict(policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_policy(policy: RoomPolicy) -> str:
    """The policy in one line, for the audit trail: the ways in and how long each list is (the
    addresses themselves are not repeated there)."""
    ways = []
    if policy.invite:
        ways.append("invite")
    if policy.oidc:
        providers = ", ".join(policy.oidc_providers) or "any provider"
        ways.append(f"sign-in ({providers})")
    if policy.email_code:
        ways.append("e-mail code")
    if policy.lobby:
        ways.append("host approves")
    counts = [
        _count(len(policy.allowed_emails), "address", "addresses"),
        _count(len(policy.allowed_domains), "domain", "domains"),
        _count(len(policy.allowed_groups), "group", "groups"),
        _count(len(policy.host_emails), "host address", "host addresses"),
    ]
    listed = ", ".join(count for count in counts if count)
    return f"ways in: {', '.join(ways)}" + (f"; lists: {listed}" if listed else "")


def _count(n: int, one: str, many: str) -> str:
    if n == 0:
        return ""
    return f"1 {one}" if n == 1 else f"{n} {many}"


class Verdict(Enum):
    ADMIT = "admit"
    LOBBY = "lobby"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    role: Role = Role.ATTENDEE
    reason: str = ""


def offered_paths(policy: RoomPolicy) -> list[Path]:
    """The ways in a room's gate page offers (an invite is used through its own link)."""
    paths = []
    if policy.oidc:
        paths.append(Path.OIDC)
    if policy.email_code:
        paths.append(Path.EMAIL)
    if policy.lobby and not (policy.oidc or policy.email_code):
        # Lobby alone: an open but moderated room, where a host sees every request.
        paths.append(Path.LOBBY)
    return paths


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def email_allowed(policy: RoomPolicy, email: str | None) -> bool:
    if not policy.allowed_emails and not policy.allowed_domains:
        return True
    if email is None:
        return False
    address = email.strip().lower()
    return address in (e.lower() for e in policy.allowed_emails) or _domain(address) in (
        d.lower().lstrip("@") for d in policy.allowed_domains
    )


def _is_host(policy: RoomPolicy, identity: VerifiedIdentity) -> bool:
    if identity.email is None or not identity.email_verified:
        return False
    return identity.email.strip().lower() in (e.lower() for e in policy.host_emails)


def decide(policy: RoomPolicy, identity: VerifiedIdentity) -> Decision:
    """May this identity enter this room, as which role, and straight away or via the lobby?"""
    if identity.path is Path.INVITE:
        # The invite itself is the policy: a host chose this person and this name. A host's
        # invite admits where invites are off too: the policy governs attendees, not hosts.
        if policy.invite or identity.role is Role.HOST:
            return Decision(Verdict.ADMIT, identity.role)
        return _refuse("invite")
    if identity.path is Path.OIDC:
        if not policy.oidc:
            return _refuse("sign-in is not a way into this room")
        if policy.oidc_providers and identity.provider not in policy.oidc_providers:
            return _refuse("this provider is not accepted for this room")
        if policy.allowed_groups and not set(policy.allowed_groups) & set(identity.groups):
            return _refuse("not in an allowed group")
    elif identity.path is Path.EMAIL:
        if not policy.email_code:
            return _refuse("e-mail codes are not a way into this room")
    elif identity.path is Path.LOBBY:
        if not policy.lobby:
            return _refuse("this room has no lobby")
        return Decision(Verdict.LOBBY)
    if identity.path in (Path.OIDC, Path.EMAIL):
        if not (identity.email_verified or identity.path is Path.EMAIL) and (
            policy.allowed_emails or policy.allowed_domains
        ):
            return _refuse("the e-mail address is not verified")
        if _is_host(policy, identity):
            return Decision(Verdict.ADMIT, Role.HOST)
        if not email_allowed(policy, identity.email):
            return _refuse("address or domain not allowed")
    if policy.lobby:
        return Decision(Verdict.LOBBY)
    return Decision(Verdict.ADMIT)


def _refuse(reason: str) -> Decision:
    return Decision(Verdict.REFUSE, reason=reason)
