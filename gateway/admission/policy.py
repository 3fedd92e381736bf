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
from gateway.errors import InvalidValues, Phrase
from gateway.i18n import ENGLISH, N_, Language, translations
from gateway.store.records import PolicyShape, Role, RoomPolicy

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
    mail_configured: bool,
) -> RoomPolicy:
    """A room policy from what was asked for; InvalidValues naming every problem at once.

    Addresses and domains are trimmed and lower-cased ("@" before a domain dropped), groups only
    trimmed (group claims are compared as they are); blank entries are dropped and repeats kept
    once. `known_providers`: the configured OpenID Connect providers' names. `mail_configured`:
    whether the configuration names an SMTP server, without which no code could be sent.
    """
    problems: list[Phrase] = []
    providers = _entries(oidc_providers, lower=False)
    unknown = [name for name in providers if name not in known_providers]
    if unknown:
        problems.append(
            Phrase(
                N_("No OpenID Connect provider is configured as {names}."),
                names=", ".join(name[:40] for name in sorted(unknown)[:5]),
            )
        )
    if not (invite or oidc or email_code or lobby):
        problems.append(Phrase(N_("A room needs at least one way in.")))
    if oidc and not known_providers:
        problems.append(
            Phrase(N_("Sign-in needs an OpenID Connect provider in the configuration."))
        )
    if email_code and not mail_configured:
        problems.append(
            Phrase(
                N_(
                    "E-mail codes need an SMTP server, and this Meetgate has none configured:"
                    " an admin must set [smtp] host (MEETGATE_SMTP__HOST) first."
                )
            )
        )
    emails = _entries(allowed_emails, lower=True)
    domains = _entries((d.strip().lstrip("@") for d in allowed_domains), lower=True)
    groups = _entries(allowed_groups, lower=False)
    hosts = _entries(host_emails, lower=True)
    for too_many, values, most in (
        (N_("At most {most} providers can be listed."), providers, MAX_PROVIDERS),
        (N_("At most {most} allowed addresses can be listed."), emails, MAX_EMAILS),
        (N_("At most {most} allowed domains can be listed."), domains, MAX_DOMAINS),
        (N_("At most {most} allowed groups can be listed."), groups, MAX_GROUPS),
        (N_("At most {most} host addresses can be listed."), hosts, MAX_HOST_EMAILS),
    ):
        if len(values) > most:
            problems.append(Phrase(too_many, most=most))
    problems += _bad_entries(_ADDRESS, emails, MAX_ADDRESS_CHARS, _is_address)
    problems += _bad_entries(_HOST_ADDRESS, hosts, MAX_ADDRESS_CHARS, _is_address)
    problems += _bad_entries(_DOMAIN, domains, MAX_DOMAIN_CHARS, _is_domain)
    problems += _bad_entries(_GROUP, groups, MAX_GROUP_CHARS, lambda _: True)
    if problems:
        raise InvalidValues(problems)
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


@dataclass(frozen=True, slots=True)
class _EntryProblems:
    """What to say of an entry of one list that cannot be right (each a whole sentence, so that
    every language can say it in its own order)."""

    too_long: str
    invisible: str
    not_valid: str


_ADDRESS = _EntryProblems(
    N_("An address can be at most {most} characters long."),
    N_("An address contains a control, invisible or line-break character."),
    N_("This is not a valid address: {value}"),
)
_HOST_ADDRESS = _EntryProblems(
    N_("A host address can be at most {most} characters long."),
    N_("A host address contains a control, invisible or line-break character."),
    N_("This is not a valid host address: {value}"),
)
_DOMAIN = _EntryProblems(
    N_("A domain can be at most {most} characters long."),
    N_("A domain contains a control, invisible or line-break character."),
    N_("This is not a valid domain: {value}"),
)
_GROUP = _EntryProblems(
    N_("A group can be at most {most} characters long."),
    N_("A group contains a control, invisible or line-break character."),
    N_("This is not a valid group: {value}"),
)


def _bad_entries(
    says: _EntryProblems, values: tuple[str, ...], max_chars: int, shaped: Callable[[str], bool]
) -> list[Phrase]:
    """One problem for the first entry of a kind that cannot be right (not every one of 10 000)."""
    for value in values:
        if len(value) > max_chars:
            return [Phrase(says.too_long, most=max_chars)]
        if any(unicodedata.category(char)[0] in "CZ" for char in value if char != " "):
            return [Phrase(says.invisible)]
        if not shaped(value):
            return [Phrase(says.not_valid, value=value[:60])]
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


def describe_policy(policy: RoomPolicy | PolicyShape, language: Language = ENGLISH) -> str:
    """The policy in one line, in `language`: the ways in and how long each list is (the
    addresses themselves are not repeated there; the host actions' log keeps only its shape)."""
    shape = policy if isinstance(policy, PolicyShape) else PolicyShape.of(policy)
    words = translations(language)
    # Translators: what separates the items of a list within a sentence.
    separator = words.gettext(", ")
    ways = []
    if shape.invite:
        ways.append(words.gettext("invite"))
    if shape.oidc and shape.oidc_providers:
        providers = separator.join(shape.oidc_providers)
        ways.append(words.gettext("sign-in ({providers})").format(providers=providers))
    elif shape.oidc:
        ways.append(words.gettext("sign-in (any provider)"))
    if shape.email_code:
        ways.append(words.gettext("e-mail code"))
    if shape.lobby:
        ways.append(words.gettext("host approves"))
    sizes = (shape.allowed_emails, shape.allowed_domains, shape.allowed_groups, shape.host_emails)
    counts = (
        words.ngettext("{n} address", "{n} addresses", sizes[0]),
        words.ngettext("{n} domain", "{n} domains", sizes[1]),
        words.ngettext("{n} group", "{n} groups", sizes[2]),
        words.ngettext("{n} host address", "{n} host addresses", sizes[3]),
    )
    listed = separator.join(count.format(n=n) for n, count in zip(sizes, counts, strict=True) if n)
    if not listed:
        return words.gettext("ways in: {ways}").format(ways=separator.join(ways))
    return words.gettext("ways in: {ways}; lists: {listed}").format(
        ways=separator.join(ways), listed=listed
    )


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
